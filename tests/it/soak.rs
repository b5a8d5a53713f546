//! A short soak of aiida-core-with-services (the long one is `bench/soak.sh`): `docker kill`
//! and `docker start` with a calculation in flight, several times on the same home volume;
//! every calculation finishes, none is lost, and the container is ready after each start.

use crate::support::{Need, skip_without};
use std::time::Duration;

use crate::support::Harness;
use crate::support::images::{Container, submit_add};

const CYCLES: u32 = 5;

#[test]
fn kill_and_start_with_calculations_in_flight_loses_nothing() {
    if skip_without(&[Need::Docker]) {
        return;
    }
    let h = Harness::new();
    let c = Container::ready_with_services_on_a_new_home(&h);
    let mut expected = Vec::new();
    for cycle in 1..=CYCLES {
        let (x, y) = (i64::from(cycle), 100 * i64::from(cycle));
        expected.push(format!("{}:{}", submit_add(&c, x, y, None), x + y));
        // Killed at different moments of the calculation: at once, or a second or two later.
        std::thread::sleep(Duration::from_secs(u64::from(cycle % 3)));
        c.kill();
        c.start_again();
        c.wait_ready();
    }
    // Each calculation finished (resumed by the daemon when the kill interrupted it) with the
    // right sum: none lost.
    let check = format!(
        "import time\nfrom aiida import orm\nexpected = dict(e.split(':') for e in '{}'.split())\n\
         deadline = time.monotonic() + 300\n\
         while True:\n\
         \x20   nodes = {{pk: orm.load_node(int(pk)) for pk in expected}}\n\
         \x20   done = {{pk: n.is_finished_ok and n.outputs.sum.value == int(expected[pk]) for pk, n in nodes.items()}}\n\
         \x20   if all(done.values()) or time.monotonic() > deadline:\n\
         \x20       break\n\
         \x20   time.sleep(1)\n\
         for pk, n in nodes.items():\n\
         \x20   print(pk, 'ok' if done[pk] else n.process_state)",
        expected.join(" ")
    );
    let (status, out) = c.python_in_profile(&check);
    assert_eq!(status, 0, "{out}");
    let lost: Vec<&str> = out.lines().filter(|l| !l.ends_with(" ok")).collect();
    assert!(
        lost.is_empty() && out.lines().count() == CYCLES as usize,
        "calculations not finished after {CYCLES} kills:\n{out}\n--- logs ---\n{}",
        c.logs()
    );
    c.assert_verdi_ready(true);
}
