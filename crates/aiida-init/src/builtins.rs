//! The one table of builtins: each execline and s6 command that aiida-init answers itself,
//! declared once with its name, its [`Shape`] (options, arguments, blocks, whether a command
//! line follows) and the function that runs it. Derived from the table:
//!
//! * the multi-call names ([`multi_call_names`]: the table plus `execlineb`), which
//!   `install-commands` links and the binary answers to;
//! * the static validation of execline scripts ([`super::execline::validate`] asks [`shape`]);
//! * the dispatch of the interpreter ([`run`]): options parsed by [`super::getopt`] (a usage
//!   error exits 100), then the builtin runs, and the command line goes on or the process exits;
//!   a word that is not a builtin is exec'd as a program with the rest as its arguments.

use std::ffi::CString;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use super::execline_programs as el;
use super::getopt::{self, USAGE, die};
use super::program::{Context, Invocation, Next, Run, Shape};
use super::s6;

/// One builtin.
pub struct Builtin {
    pub name: &'static str,
    pub shape: Shape,
    pub run: Run,
}

const fn builtin(name: &'static str, shape: Shape, run: Run) -> Builtin {
    Builtin { name, shape, run }
}

/// Every builtin. A command line goes on after a `chain`; a `last` ends it.
pub const TABLE: &[Builtin] = &[
    builtin("foreground", Shape::chain("", "", 0, 1), el::foreground),
    builtin("background", Shape::chain("d", "", 0, 1), el::foreground),
    builtin("if", Shape::chain("nXt", "x", 0, 1), el::if_),
    builtin("importas", Shape::chain("iusCcn", "Dd", 2, 0), el::importas),
    builtin("redirfd", Shape::chain("rwuacxnb", "", 2, 0), el::redirfd),
    builtin("fdmove", Shape::chain("c", "", 2, 0), el::fdmove),
    builtin("export", Shape::chain("", "", 2, 0), el::export),
    builtin("unexport", Shape::chain("", "", 1, 0), el::unexport),
    builtin("cd", Shape::chain("", "", 1, 0), el::cd),
    builtin("execline-cd", Shape::chain("", "", 1, 0), el::cd),
    builtin("exec", Shape::chain("cl", "a", 0, 0), el::exec),
    builtin("emptyenv", Shape::chain("pcoP", "", 0, 0), el::emptyenv),
    builtin("exit", Shape::last("", ""), el::exit),
    builtin("s6-echo", Shape::last("n", "s"), el::s6_echo),
    builtin("with-contenv", Shape::chain("", "", 0, 0), s6::with_contenv),
    builtin("s6-envdir", Shape::chain("Iinf", "c", 1, 0), s6::s6_envdir),
    builtin("s6-setuidgid", Shape::chain("", "", 1, 0), s6::s6_setuidgid),
    builtin(
        "s6-notifyoncheck",
        Shape::chain("d", "3sTtwnc", 0, 0),
        s6::s6_notifyoncheck,
    ),
    builtin("printcontenv", Shape::last("", ""), s6::printcontenv),
    builtin("s6-svc", Shape::last(s6::SVC_LETTERS, "wT"), s6::s6_svc),
    builtin("halt", Shape::last("fwni", ""), s6::halt),
    builtin("poweroff", Shape::last("fwni", ""), s6::halt),
    builtin("reboot", Shape::last("fwni", ""), s6::halt),
];

/// The multi-call name of the execline script interpreter (see [`super::execline`]).
pub const EXECLINEB: &str = "execlineb";

/// The builtin called `name`.
pub fn lookup(name: &str) -> Option<&'static Builtin> {
    TABLE.iter().find(|b| b.name == name)
}

/// The shape of builtin `name`; None for an ordinary program.
pub fn shape(name: &str) -> Option<Shape> {
    lookup(name).map(|b| b.shape)
}

/// Every name the binary answers to when called by it: `execlineb` and the table.
pub fn multi_call_names() -> impl Iterator<Item = &'static str> {
    std::iter::once(EXECLINEB).chain(TABLE.iter().map(|b| b.name))
}

pub fn is_multi_call_name(name: &str) -> bool {
    name == EXECLINEB || lookup(name).is_some()
}

const CONTEXT: Context = Context {
    run_block: run,
    script_command,
};

/// Run execline-encoded argv in this process: builtins are interpreted, the final program is
/// exec'd. Never returns.
pub fn run(argv: Vec<String>) -> ! {
    let mut argv = argv;
    loop {
        let Some(first) = argv.first() else {
            std::process::exit(0)
        };
        let Some(builtin) = lookup(first) else {
            exec_program(&argv)
        };
        let options = getopt::parse_or_die(builtin.name, &argv, 1, builtin.shape.options);
        let invocation = Invocation {
            name: builtin.name,
            args: &argv[options.next..],
            options,
            context: &CONTEXT,
        };
        match (builtin.run)(&invocation) {
            Next::Chain(next) => argv = next,
            Next::Exit(code) => std::process::exit(code),
        }
    }
}

/// exec a program with PATH search; exits 127 (not found) or 126 (other errors) on failure.
pub fn exec_program(argv: &[String]) -> ! {
    let cargs: Vec<CString> = argv
        .iter()
        .map(|a| {
            CString::new(a.as_bytes())
                .unwrap_or_else(|_| die(EXECLINEB, USAGE, "argument contains a NUL byte"))
        })
        .collect();
    let err = nix::unistd::execvp(&cargs[0], &cargs).unwrap_err();
    let code = if err == nix::errno::Errno::ENOENT {
        127
    } else {
        126
    };
    die(
        EXECLINEB,
        code,
        &format!("unable to exec {}: {}", argv[0], err.desc()),
    )
}

/// The `#!` line of a script: the interpreter and its argument, if any.
fn shebang(path: &Path) -> Option<(String, Option<String>)> {
    let mut buf = [0u8; 256];
    let n = {
        use std::io::Read;
        std::fs::File::open(path).ok()?.read(&mut buf).ok()?
    };
    let first = buf[..n].split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(first).ok()?.strip_prefix("#!")?.trim();
    let (interp, arg) = match line.split_once([' ', '\t']) {
        Some((i, a)) => (i, Some(a.trim()).filter(|a| !a.is_empty())),
        None => (line, None),
    };
    Some((interp.to_string(), arg.map(String::from))).filter(|(i, _)| !i.is_empty())
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
}

/// A command that runs the script `path`: through this binary when its `#!` names one of ours
/// (`#!/command/execlineb -P`, even where `/command` is not installed); through its `#!`
/// interpreter when it lacks the exec bit (s6-rc-compile installs `run` and `finish` with mode
/// 0755, so trees ship them with 0644); else by itself.
pub fn script_command(path: &Path) -> Command {
    let Some((interp, arg)) = shebang(path) else {
        return Command::new(path);
    };
    let ours = interp
        .strip_prefix("/command/")
        .filter(|name| is_multi_call_name(name));
    let mut c = match ours {
        Some(name) => {
            let mut c =
                Command::new(std::env::current_exe().unwrap_or_else(|_| "/proc/self/exe".into()));
            c.arg0(name);
            c
        }
        None if !is_executable(path) => Command::new(interp),
        None => return Command::new(path),
    };
    c.args(arg);
    c.arg(path);
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_the_multi_call_names_come_from_the_table() {
        let names: Vec<&str> = multi_call_names().collect();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        assert_eq!(names.len(), TABLE.len() + 1);
        assert!(is_multi_call_name("execlineb") && is_multi_call_name("s6-svc"));
        assert!(!is_multi_call_name("sh"));
    }

    #[test]
    fn the_shapes_know_the_options_of_s6_svc() {
        let svc = shape("s6-svc").unwrap();
        assert!(getopt::parse(&["-ru", "x"], 0, svc.options).is_ok());
        assert!(getopt::parse(&["-wu", "-T", "100", "-r", "x"], 0, svc.options).is_ok());
        assert_eq!(
            getopt::parse(&["-z", "x"], 0, svc.options),
            Err(getopt::OptionError::Unknown('z'))
        );
        assert!(shape("sh").is_none());
    }
}
