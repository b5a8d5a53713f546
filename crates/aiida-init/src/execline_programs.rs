//! execline's own programs, run in-process by the interpreter: `foreground`, `background`, `if`,
//! `importas`, `redirfd`, `fdmove`, `export`, `unexport`, `cd`, `exec`, `emptyenv`, `exit` and
//! `s6-echo`. Each gets its options already parsed ([`Invocation`]) and returns the command
//! line to go on with, or an exit code ([`Next`]).

use std::ffi::CString;
use std::io::Write;

use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, fork};

use super::getopt::{SYSTEM, USAGE, die};
use super::program::{Invocation, Next};

pub fn set_env(key: &str, value: &str) {
    // SAFETY: the interpreter is single-threaded.
    unsafe { std::env::set_var(key, value) }
}

pub fn remove_env(key: &str) {
    // SAFETY: the interpreter is single-threaded.
    unsafe { std::env::remove_var(key) }
}

/// Take a block from execline-encoded argv at `i`: returns the decoded inner argv and the index
/// after the terminator.
fn take_block(argv: &[String], mut i: usize, prog: &str) -> (Vec<String>, usize) {
    let mut inner = Vec::new();
    loop {
        let Some(a) = argv.get(i) else {
            die(prog, USAGE, "unterminated block")
        };
        i += 1;
        if a.is_empty() {
            return (inner, i);
        }
        match a.strip_prefix(' ') {
            Some(w) => inner.push(w.to_string()),
            None => die(prog, USAGE, "unterminated block"),
        }
    }
}

/// Run a child that interprets `block`, wait for it; returns its wait status.
fn spawn_block(inv: &Invocation, block: Vec<String>) -> WaitStatus {
    if block.is_empty() {
        return WaitStatus::Exited(nix::unistd::Pid::from_raw(0), 0);
    }
    // SAFETY: the interpreter is single-threaded; the child only runs the interpreter.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => (inv.context.run_block)(block),
        Ok(ForkResult::Parent { child }) => loop {
            match waitpid(child, None) {
                Ok(s @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => return s,
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => die(inv.name, SYSTEM, &format!("unable to wait: {e}")),
            }
        },
        Err(e) => die(inv.name, SYSTEM, &format!("unable to fork: {e}")),
    }
}

/// `foreground { prog... } rest...` and `background [-d] { prog... } rest...`.
pub fn foreground(inv: &Invocation) -> Next {
    let (block, next) = take_block(inv.args, 0, inv.name);
    if inv.name == "background" {
        // SAFETY: single-threaded; the child only runs the interpreter.
        match unsafe { fork() } {
            Ok(ForkResult::Child) => (inv.context.run_block)(block),
            Ok(ForkResult::Parent { .. }) => {}
            Err(e) => die(inv.name, SYSTEM, &format!("unable to fork: {e}")),
        }
    } else {
        let code = match spawn_block(inv, block) {
            WaitStatus::Exited(_, c) => c,
            WaitStatus::Signaled(_, s, _) => 256 + s as i32,
            _ => 0,
        };
        set_env("?", &code.to_string());
    }
    Next::Chain(inv.args[next..].to_vec())
}

/// `if [-n] [-X] [-t | -x code] { prog... } rest...`.
pub fn if_(inv: &Invocation) -> Next {
    let negate = inv.options.has('n');
    let (block, next) = take_block(inv.args, 0, inv.name);
    let (ok, code) = match spawn_block(inv, block) {
        WaitStatus::Exited(_, c) => (c == 0, c),
        WaitStatus::Signaled(_, s, _) => {
            if !negate && !inv.options.has('X') {
                eprintln_whole!("if: fatal: child crashed with signal {}", s as i32);
            }
            (false, 128 + s as i32)
        }
        _ => (false, SYSTEM),
    };
    if ok != negate {
        return Next::Chain(inv.args[next..].to_vec());
    }
    let code = if inv.options.has('t') {
        0
    } else if let Some(x) = inv.options.value('x') {
        x.parse()
            .unwrap_or_else(|_| die(inv.name, USAGE, &format!("invalid exit code: {x}")))
    } else if negate {
        1
    } else {
        code
    };
    Next::Exit(code)
}

/// `importas [-i | -D default] [-u] [-s] [-d delim] var envvar rest...`.
pub fn importas(inv: &Invocation) -> Next {
    let [var, envvar, ..] = inv.args else {
        die(
            inv.name,
            USAGE,
            "usage: importas [-i|-D default] [-u] [-s] [-d delim] var envvar prog...",
        )
    };
    let default = inv.options.value('D').map(String::from);
    let delim = inv.options.value('d').unwrap_or(" \n\t");
    let split = inv.options.has('s') || inv.options.has('d');
    let value = std::env::var(envvar).ok().or(default);
    if value.is_none() && inv.options.has('i') {
        die(inv.name, USAGE, &format!("{envvar} not set"));
    }
    let values = value.map(|v| {
        if split {
            v.split(|c| delim.contains(c))
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        } else {
            vec![v]
        }
    });
    if inv.options.has('u') {
        remove_env(envvar);
    }
    Next::Chain(
        inv.args[2..]
            .iter()
            .flat_map(|w| substitute_word(w, var, values.as_deref()))
            .collect(),
    )
}

fn parse_fd(prog: &str, fd: &str) -> i32 {
    fd.parse()
        .unwrap_or_else(|_| die(prog, USAGE, &format!("invalid fd: {fd}")))
}

/// `redirfd -[rwuacx] [-n] [-b] fd file rest...`.
pub fn redirfd(inv: &Invocation) -> Next {
    let [fd, file, ..] = inv.args else {
        die(
            inv.name,
            USAGE,
            "usage: redirfd -[rwuacx] [-n] [-b] fd file prog...",
        )
    };
    let fd = parse_fd(inv.name, fd);
    let mut flags = libc::O_RDONLY;
    for (o, _) in &inv.options.options {
        flags = match o {
            'w' => libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC,
            'u' => libc::O_RDWR,
            'a' => libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND,
            'c' => libc::O_WRONLY | libc::O_APPEND,
            'x' => libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
            'r' => libc::O_RDONLY,
            _ => flags,
        };
    }
    let nonblock_open = inv.options.has('n');
    let cpath = CString::new(file.as_bytes())
        .unwrap_or_else(|_| die(inv.name, USAGE, "the file name contains a NUL byte"));
    let open_flags = flags | if nonblock_open { libc::O_NONBLOCK } else { 0 };
    // SAFETY: plain libc calls on a valid C string.
    let newfd = unsafe { libc::open(cpath.as_ptr(), open_flags, 0o666) };
    if newfd < 0 {
        die(
            inv.name,
            SYSTEM,
            &format!("unable to open {file}: {}", std::io::Error::last_os_error()),
        );
    }
    move_fd(newfd, fd, inv.name);
    if nonblock_open && !inv.options.has('b') {
        // SAFETY: fd is open.
        unsafe {
            let fl = libc::fcntl(fd, libc::F_GETFL);
            libc::fcntl(fd, libc::F_SETFL, fl & !libc::O_NONBLOCK);
        }
    }
    Next::Chain(inv.args[2..].to_vec())
}

/// `fdmove [-c] to from rest...`.
pub fn fdmove(inv: &Invocation) -> Next {
    let [to, from, ..] = inv.args else {
        die(inv.name, USAGE, "usage: fdmove [-c] to from prog...")
    };
    let (to, from) = (parse_fd(inv.name, to), parse_fd(inv.name, from));
    if inv.options.has('c') {
        // SAFETY: dup2 on fds.
        if unsafe { libc::dup2(from, to) } < 0 {
            die(
                inv.name,
                SYSTEM,
                &format!(
                    "unable to copy fd {from} to {to}: {}",
                    std::io::Error::last_os_error()
                ),
            );
        }
    } else {
        move_fd(from, to, inv.name);
    }
    Next::Chain(inv.args[2..].to_vec())
}

fn move_fd(from: i32, to: i32, prog: &str) {
    if from == to {
        return;
    }
    // SAFETY: dup2/close on fds.
    unsafe {
        if libc::dup2(from, to) < 0 {
            die(
                prog,
                SYSTEM,
                &format!(
                    "unable to move fd {from} to {to}: {}",
                    std::io::Error::last_os_error()
                ),
            );
        }
        libc::close(from);
    }
}

/// `export var value rest...`.
pub fn export(inv: &Invocation) -> Next {
    let [k, v, ..] = inv.args else {
        die(inv.name, USAGE, "usage: export var value prog...")
    };
    set_env(k, v);
    Next::Chain(inv.args[2..].to_vec())
}

/// `unexport var rest...`.
pub fn unexport(inv: &Invocation) -> Next {
    let [k, ..] = inv.args else {
        die(inv.name, USAGE, "usage: unexport var prog...")
    };
    remove_env(k);
    Next::Chain(inv.args[1..].to_vec())
}

/// `cd dir rest...` (also `execline-cd`).
pub fn cd(inv: &Invocation) -> Next {
    let [d, ..] = inv.args else {
        die(inv.name, USAGE, "usage: cd dir prog...")
    };
    if let Err(e) = std::env::set_current_dir(d) {
        die(inv.name, SYSTEM, &format!("unable to chdir to {d}: {e}"));
    }
    Next::Chain(inv.args[1..].to_vec())
}

/// `exec [-c] [-l] [-a argv0] rest...`: the rest runs as it would anyway.
pub fn exec(inv: &Invocation) -> Next {
    Next::Chain(inv.args.to_vec())
}

/// `emptyenv [-p] rest...`: the rest runs with no environment (but PATH with `-p`).
pub fn emptyenv(inv: &Invocation) -> Next {
    let keep_path = inv.options.has('p');
    for (k, _) in std::env::vars_os() {
        if !(keep_path && k == "PATH") {
            // SAFETY: single-threaded.
            unsafe { std::env::remove_var(&k) };
        }
    }
    Next::Chain(inv.args.to_vec())
}

/// `exit [code]`.
pub fn exit(inv: &Invocation) -> Next {
    Next::Exit(
        inv.args
            .first()
            .and_then(|c| c.parse::<i32>().ok())
            .unwrap_or(0),
    )
}

/// `s6-echo [-n] [-s sep] words...`.
pub fn s6_echo(inv: &Invocation) -> Next {
    let sep = inv.options.value('s').unwrap_or(" ");
    let mut out = inv.args.join(sep);
    if !inv.options.has('n') {
        out.push('\n');
    }
    let mut stdout = std::io::stdout();
    let ok = stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush());
    Next::Exit(if ok.is_ok() { 0 } else { SYSTEM })
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Substitute one variable in one word, execline style: `${name}` and `$name`; an odd number of
/// backslashes before `$` escapes it (and backslashes are halved). With `value` = None (the
/// variable is unset) the word disappears. Several values (split or `$@`) multiply the word.
pub fn substitute_word(word: &str, name: &str, value: Option<&[String]>) -> Vec<String> {
    let bytes: Vec<char> = word.chars().collect();
    // Pieces: literal text and substitution points.
    let mut pieces: Vec<Option<String>> = vec![Some(String::new())];
    let mut found = false;
    let mut i = 0;
    while i < bytes.len() {
        let mut j = i;
        while j < bytes.len() && bytes[j] == '\\' {
            j += 1;
        }
        let backslashes = j - i;
        if j < bytes.len() && bytes[j] == '$' {
            let rest: String = bytes[j + 1..].iter().collect();
            let braced = format!("{{{name}}}");
            let len = if rest.starts_with(&braced) {
                Some(braced.chars().count())
            } else if rest.starts_with(name)
                && !(name.chars().all(is_name_char)
                    && rest[name.len()..].chars().next().is_some_and(is_name_char))
            {
                Some(name.chars().count())
            } else {
                None
            };
            if let Some(len) = len {
                let lit = pieces.last_mut().unwrap().as_mut().unwrap();
                for _ in 0..backslashes / 2 {
                    lit.push('\\');
                }
                if backslashes % 2 == 1 {
                    lit.push('$');
                    lit.extend(&bytes[j + 1..j + 1 + len]);
                } else {
                    found = true;
                    pieces.push(None);
                    pieces.push(Some(String::new()));
                }
                i = j + 1 + len;
                continue;
            }
        }
        let lit = pieces.last_mut().unwrap().as_mut().unwrap();
        lit.extend(&bytes[i..j.max(i + 1).min(bytes.len())]);
        i = j.max(i + 1);
    }
    if !found {
        // Nothing substituted, but escapes (`\${name}`) are resolved.
        return vec![pieces.into_iter().flatten().collect()];
    }
    let Some(values) = value else {
        return Vec::new();
    };
    let mut results = vec![String::new()];
    for p in pieces {
        match p {
            Some(lit) => results.iter_mut().for_each(|r| r.push_str(&lit)),
            None => {
                results = results
                    .iter()
                    .flat_map(|r| values.iter().map(move |v| format!("{r}{v}")))
                    .collect();
            }
        }
    }
    results
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitution_matches_execline() {
        let v = vec!["a b".to_string()];
        assert_eq!(substitute_word("x${X}y", "X", Some(&v)), vec!["xa by"]);
        assert_eq!(substitute_word("\\${X}", "X", Some(&v)), vec!["${X}"]);
        assert_eq!(substitute_word("$XY", "X", Some(&v)), vec!["$XY"]);
        assert_eq!(substitute_word("a${X}b", "X", None), Vec::<String>::new());
        assert_eq!(
            substitute_word("${?}", "?", Some(&["3".to_string()])),
            vec!["3"]
        );
    }
}
