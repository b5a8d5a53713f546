//! A short soak of aiida-core-with-services (the long one is `bench/soak.sh`): `docker kill`
//! and `docker start` with a calculation in flight, several times on the same home volume;
//! every calculation finishes, none is lost (one whose job the kill killed runs again with the
//! same inputs), and the container is ready after each start.

use crate::support::{Need, skip_without};
use std::time::Duration;

use crate::support::Harness;
use crate::support::images::{
    Container, JOB_KILLED_EXIT_STATUS, await_sum_within, submit_add, submit_again,
};

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
    // right sum: none lost. A kill that lands while a calculation's job runs kills the job with
    // the container, and the calculation then ends with the parser's "invalid output"
    // (JOB_KILLED_EXIT_STATUS, as faults::docker_kill_during_a_calculation_then_start_resumes_it
    // provokes): the same inputs submitted again must finish with the right sum.
    let check = format!(
        "import time\nfrom aiida import orm\n\
         expected = dict(e.split(':') for e in '{}'.split())\n\
         deadline = time.monotonic() + 300\n\
         while True:\n\
         \x20   nodes = {{pk: orm.load_node(int(pk)) for pk in expected}}\n\
         \x20   done = {{pk: n.is_finished_ok and n.outputs.sum.value == int(expected[pk]) for pk, n in nodes.items()}}\n\
         \x20   killed = {{pk for pk, n in nodes.items() if n.is_finished and n.exit_status == {JOB_KILLED_EXIT_STATUS}}}\n\
         \x20   if all(done[pk] or pk in killed for pk in done) or time.monotonic() > deadline:\n\
         \x20       break\n\
         \x20   time.sleep(1)\n\
         for pk, n in nodes.items():\n\
         \x20   if done[pk]:\n\
         \x20       print(pk, 'ok')\n\
         \x20   elif pk in killed:\n\
         \x20       print(pk, 'job killed', expected[pk])\n\
         \x20   else:\n\
         \x20       print(pk, f'{{n.process_state}} exit status {{n.exit_status}}: {{n.exit_message}}')",
        expected.join(" ")
    );
    let (status, out) = c.python_in_profile(&check);
    assert_eq!(status, 0, "{out}");
    let lost: Vec<&str> = out
        .lines()
        .filter(|l| !l.ends_with(" ok") && !l.contains(" job killed "))
        .collect();
    assert!(
        lost.is_empty() && out.lines().count() == CYCLES as usize,
        "calculations not finished after {CYCLES} kills:\n{out}\n--- logs ---\n{}",
        c.logs()
    );
    for line in out.lines().filter(|l| l.contains(" job killed ")) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let (pk, sum) = (words[0], words[3]);
        let again = submit_again(&c, pk);
        assert_eq!(
            await_sum_within(&c, &again, 300).to_string(),
            sum,
            "{line}: submitted again as {again}, it did not give the right sum"
        );
    }
    c.assert_verdi_ready(true);
}
