//! `aiida-init status [--json]` and `aiida-init wait [--timeout SECS] [SERVICE...]`.
//!
//! Both run as separate processes (typically `docker exec CONTAINER aiida-init status`) and
//! read `state.json` of the running instance, found by [`runtime::locate`] whatever the
//! environment or user of the exec'd process.
//!
//! `wait` blocks until the `user` bundle (or the named services and bundles) are ready: a
//! oneshot whose `up` succeeded, a longrun that is up, or ready when it notifies readiness. It
//! exits 0 then; 1 when one of them failed or the instance is stopping, 2 on timeout, printing
//! which service is at fault and its last log lines.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::runtime;

fn read_state() -> Option<Value> {
    let rt = runtime::locate()?;
    let text = std::fs::read_to_string(rt.state_file()).ok()?;
    serde_json::from_str(&text).ok()
}

fn fmt_ms(v: &Value) -> String {
    v.as_u64()
        .map(|ms| format!("{}.{:03}s", ms / 1000, ms % 1000))
        .unwrap_or_else(|| "-".into())
}

/// `aiida-init status [--json]`.
pub fn status(args: &[String]) -> i32 {
    let json = args.iter().any(|a| a == "--json");
    if let Some(bad) = args.iter().find(|a| *a != "--json") {
        eprintln!(
            "aiida-init status: unknown argument `{bad}` (usage: aiida-init status [--json])"
        );
        return 100;
    }
    let Some(state) = read_state() else {
        eprintln!(
            "aiida-init status: no running aiida-init found (searched {})",
            runtime::candidates()
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        return 1;
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&state).unwrap_or_default()
        );
        return 0;
    }
    println!(
        "aiida-init pid {}: {}{}",
        state["pid"],
        state["phase"].as_str().unwrap_or("?"),
        state["services_up_ms"]
            .as_u64()
            .map(|_| format!(", services up after {}", fmt_ms(&state["services_up_ms"])))
            .unwrap_or_default()
    );
    println!(
        "{:<24} {:<8} {:<9} {:>8} {:>9} {:>9}  NOTE",
        "SERVICE", "TYPE", "STATE", "PID", "READY AT", "TOOK"
    );
    for s in state["services"].as_array().into_iter().flatten() {
        let name = s["name"].as_str().unwrap_or("?");
        if matches!(
            name,
            "stage2-hook" | "fix-attrs" | "legacy-services" | "legacy-cont-init"
        ) && s["state"] == "up"
            && s["took_ms"].as_u64().unwrap_or(0) == 0
        {
            continue; // s6-overlay's empty built-ins: noise
        }
        let note = s["reason"].as_str().map(String::from).unwrap_or_else(|| {
            let r = s["restarts"].as_u64().unwrap_or(0);
            if r > 0 {
                format!(
                    "restarted {r}x, last {}",
                    s["last_exit"].as_str().unwrap_or("?")
                )
            } else {
                String::new()
            }
        });
        println!(
            "{:<24} {:<8} {:<9} {:>8} {:>9} {:>9}  {}",
            name,
            s["type"].as_str().unwrap_or("?"),
            s["state"].as_str().unwrap_or("?"),
            s["pid"]
                .as_i64()
                .map(|p| p.to_string())
                .unwrap_or("-".into()),
            fmt_ms(&s["ready_ms"]),
            fmt_ms(&s["took_ms"]),
            note
        );
    }
    if let Some(cmd) = state["command"]["argv"]
        .as_array()
        .filter(|a| !a.is_empty())
    {
        let argv: Vec<&str> = cmd.iter().filter_map(|a| a.as_str()).collect();
        let pid = state["command"]["pid"]
            .as_i64()
            .map(|p| format!("pid {p}"))
            .unwrap_or_else(|| "not running".into());
        let exit = state["command"]["exit"]
            .as_i64()
            .map(|c| format!(", exit {c}"))
            .unwrap_or_default();
        println!("command: {} ({pid}{exit})", argv.join(" "));
    }
    println!("timeline:");
    for e in state["timeline"].as_array().into_iter().flatten() {
        println!(
            "  {:>9}  {:<24} {}",
            fmt_ms(&e["ms"]),
            e["service"].as_str().unwrap_or(""),
            e["event"].as_str().unwrap_or("")
        );
    }
    0
}

fn is_ready(s: &Value) -> bool {
    match s["state"].as_str() {
        Some("ready") => true,
        Some("up") => !s["notifies_readiness"].as_bool().unwrap_or(false),
        _ => false,
    }
}

fn print_failure(s: &Value, what: &str) {
    eprintln!(
        "aiida-init wait: {} {what}{}",
        s["name"].as_str().unwrap_or("?"),
        s["reason"]
            .as_str()
            .map(|r| format!(": {r}"))
            .unwrap_or_default()
    );
    let lines: Vec<&str> = s["last_lines"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l.as_str())
        .collect();
    if !lines.is_empty() {
        eprintln!("last lines of {}:", s["name"].as_str().unwrap_or("?"));
        for l in lines {
            eprintln!("  {l}");
        }
    }
}

/// `aiida-init wait [--timeout SECS] [SERVICE...]`.
pub fn wait(args: &[String]) -> i32 {
    let mut timeout: Option<Duration> = None;
    let mut names = Vec::new();
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--timeout" | "-t" => {
                let Some(v) = args.get(i + 1).and_then(|v| v.parse::<f64>().ok()) else {
                    eprintln!("aiida-init wait: --timeout needs a number of seconds");
                    return 100;
                };
                timeout = Some(Duration::from_secs_f64(v));
                i += 1;
            }
            a if a.starts_with("--timeout=") => match a["--timeout=".len()..].parse::<f64>() {
                Ok(v) => timeout = Some(Duration::from_secs_f64(v)),
                Err(_) => {
                    eprintln!("aiida-init wait: --timeout needs a number of seconds");
                    return 100;
                }
            },
            a if a.starts_with('-') => {
                eprintln!(
                    "aiida-init wait: unknown option `{a}` (usage: aiida-init wait [--timeout SECS] [SERVICE...])"
                );
                return 100;
            }
            a => names.push(a.to_string()),
        }
        i += 1;
    }
    let start = Instant::now();
    let mut last: Option<Value> = None;
    loop {
        if let Some(state) = read_state() {
            match check(&state, &names) {
                Check::Ready => return 0,
                Check::Failed(code) => return code,
                Check::Pending => {}
            }
            last = Some(state);
        }
        if timeout.is_some_and(|t| start.elapsed() >= t) {
            let secs = timeout.unwrap().as_secs_f64();
            match &last {
                None => eprintln!(
                    "aiida-init wait: timed out after {secs}s: no running aiida-init found"
                ),
                Some(state) => {
                    let targets = targets(state, &names).unwrap_or_default();
                    for s in state["services"].as_array().into_iter().flatten() {
                        if targets.contains(s["name"].as_str().unwrap_or("")) && !is_ready(s) {
                            print_failure(
                                s,
                                &format!(
                                    "not ready after {secs}s (state {})",
                                    s["state"].as_str().unwrap_or("?")
                                ),
                            );
                        }
                    }
                }
            }
            return 2;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

enum Check {
    Ready,
    Pending,
    Failed(i32),
}

/// The services to wait for: the named ones (bundles expanded), else the `user` bundle.
fn targets(state: &Value, names: &[String]) -> Result<BTreeSet<String>, String> {
    let bundles = &state["bundles"];
    let known: BTreeSet<&str> = state["services"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["name"].as_str())
        .collect();
    let wanted: Vec<String> = if names.is_empty() {
        vec!["user".into()]
    } else {
        names.to_vec()
    };
    let mut out = BTreeSet::new();
    for n in wanted {
        if let Some(members) = bundles[n.as_str()].as_array() {
            out.extend(members.iter().filter_map(|m| m.as_str()).map(String::from));
        } else if known.contains(n.as_str()) {
            out.insert(n);
        } else {
            return Err(n);
        }
    }
    // Plus everything they depend on.
    let services = state["services"].as_array().cloned().unwrap_or_default();
    let mut todo: Vec<String> = out.iter().cloned().collect();
    while let Some(n) = todo.pop() {
        if let Some(s) = services.iter().find(|s| s["name"] == n.as_str()) {
            for d in s["dependencies"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|d| d.as_str())
            {
                if out.insert(d.to_string()) {
                    todo.push(d.to_string());
                }
            }
        }
    }
    Ok(out)
}

fn check(state: &Value, names: &[String]) -> Check {
    let targets = match targets(state, names) {
        Ok(t) => t,
        Err(n) => {
            eprintln!("aiida-init wait: no service or bundle named `{n}` in the running instance");
            return Check::Failed(1);
        }
    };
    let mut all_ready = true;
    for s in state["services"].as_array().into_iter().flatten() {
        if !targets.contains(s["name"].as_str().unwrap_or("")) {
            continue;
        }
        if s["state"] == "failed" {
            print_failure(s, "failed");
            return Check::Failed(1);
        }
        all_ready &= is_ready(s);
    }
    if all_ready {
        return Check::Ready;
    }
    if matches!(state["phase"].as_str(), Some("stopping") | Some("finished")) {
        eprintln!("aiida-init wait: the instance is shutting down");
        return Check::Failed(1);
    }
    Check::Pending
}
