//! The execline subset against the real thing: every script runs under Debian's `execlineb`
//! (package `execline`) and under aiida-init's interpreter, and must give the same argv, the
//! same environment, the same working directory and the same exit code.

use std::path::Path;
use std::process::Command;

const REAL_EXECLINEB: &str = "/usr/bin/execlineb";
const REAL_EXECLINE_BIN: &str = "/usr/lib/execline/bin";

struct Outcome {
    code: i32,
    stdout: String,
}

/// Run `script` (with execlineb `options` and `args`) under one interpreter.
fn run(
    dir: &Path,
    interpreter: &[&str],
    path_prefix: &str,
    options: &[&str],
    script: &str,
    args: &[&str],
) -> Outcome {
    let file = dir.join("script");
    std::fs::write(&file, script).unwrap();
    let mut c = Command::new(interpreter[0]);
    c.args(&interpreter[1..])
        .args(options)
        .arg(&file)
        .args(args);
    c.env_clear();
    c.env(
        "PATH",
        format!("{path_prefix}{}:/usr/bin:/bin", dir.join("bin").display()),
    );
    c.env("FOO", "a b");
    c.env("EMPTY", "");
    c.current_dir(dir);
    let out = c.output().unwrap();
    use std::os::unix::process::ExitStatusExt;
    let code = out
        .status
        .code()
        .unwrap_or_else(|| 128 + out.status.signal().unwrap_or(0));
    Outcome {
        code,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
    }
}

fn setup() -> tempfile::TempDir {
    crate::support::require_tool("execlineb");
    assert!(
        Path::new(REAL_EXECLINE_BIN).join("foreground").exists(),
        "missing prerequisite: Debian's execline package"
    );
    let dir = tempfile::tempdir().unwrap();
    // `dump` shows what the final program received: argv, cwd and the sorted environment as
    // exec'd (PATH aside: Debian's execlineb prepends its own directory).
    crate::support::write_exec(
        &dir.path().join("bin/dump"),
        "#!/bin/sh\nprintf 'argv[%s]\\n' \"$@\"\necho \"cwd=$(pwd)\"\ntr '\\0' '\\n' < /proc/$$/environ | LC_ALL=C sort | grep -v '^PATH='\n",
    );
    std::fs::write(dir.path().join("input.txt"), "from a file\n").unwrap();
    dir
}

/// Assert both interpreters agree on `script`.
fn same(dir: &Path, options: &[&str], script: &str, args: &[&str]) -> Outcome {
    let real = run(
        dir,
        &[REAL_EXECLINEB],
        &format!("{REAL_EXECLINE_BIN}:"),
        options,
        script,
        args,
    );
    let bin = crate::support::bin();
    let ours = run(
        dir,
        &[bin.to_str().unwrap(), "execlineb"],
        "",
        options,
        script,
        args,
    );
    assert_eq!(
        ours.stdout, real.stdout,
        "different output for {options:?} {script:?} {args:?}"
    );
    assert_eq!(
        ours.code, real.code,
        "different exit code for {options:?} {script:?}: {}",
        real.stdout
    );
    real
}

#[test]
fn quoting_comments_and_escapes() {
    let dir = setup();
    let d = dir.path();
    same(
        d,
        &["-P"],
        "dump a \"b c\" d\\ e \"x\\ty\" \"\\0x41\" \"\\q\" \"\" x#y\n",
        &[],
    );
    same(
        d,
        &["-P"],
        "#!/command/execlineb -P\n# a comment\ndump a # trailing comment\n  b\n",
        &[],
    );
    same(
        d,
        &["-P"],
        "dump \"line\\nbreak\" \"back\\\\slash\" \"quote\\\"d\" con\\\ntinued \"co\\\nntinued\"\n",
        &[],
    );
    same(d, &["-P"], "dump { }\n", &[]); // an empty block given to a plain program
}

#[test]
fn variables_are_substituted_only_by_importas() {
    let dir = setup();
    let d = dir.path();
    let out = same(d, &["-P"], "dump ${FOO} $FOO\n", &[]);
    assert!(out.stdout.contains("argv[${FOO}]"), "{}", out.stdout);
    same(
        d,
        &["-P"],
        "importas X FOO dump ${X} $X a${X}b \\${X} $XY\n",
        &[],
    );
    same(d, &["-P"], "importas X NOPE dump a ${X} a${X}b b\n", &[]);
    same(d, &["-P"], "importas -D fallback X NOPE dump ${X}\n", &[]);
    same(
        d,
        &["-P"],
        "importas -D fallback X EMPTY dump [${X}]\n",
        &[],
    );
    same(d, &["-P"], "importas -s X FOO dump ${X} <${X}>\n", &[]);
    same(d, &["-P"], "importas -u X FOO dump ${X}\n", &[]);
    let out = same(d, &["-P"], "importas -i X NOPE dump never\n", &[]);
    assert_eq!(out.code, 100);
    same(
        d,
        &["-P"],
        "importas X FOO importas Y EMPTY dump ${X}${Y} ${Y}\n",
        &[],
    );
}

#[test]
fn foreground_background_and_if() {
    let dir = setup();
    let d = dir.path();
    same(
        d,
        &["-P"],
        "foreground { sh -c \"exit 3\" } importas r ? dump $r\n",
        &[],
    );
    same(
        d,
        &["-P"],
        "foreground { sh -c \"kill -9 $$\" } importas r ? dump $r\n",
        &[],
    );
    same(
        d,
        &["-P"],
        "foreground { foreground { dump inner } dump middle } dump outer\n",
        &[],
    );
    same(d, &["-P"], "if { true } dump yes\n", &[]);
    let out = same(d, &["-P"], "if { sh -c \"exit 4\" } dump no\n", &[]);
    assert_eq!(out.code, 4);
    same(d, &["-P"], "if { sh -c \"kill -9 $$\" } dump no\n", &[]);
    same(d, &["-P"], "if -n { false } dump negated\n", &[]);
    same(d, &["-P"], "if -n { true } dump never\n", &[]);
    same(d, &["-P"], "if -t { false } dump never\n", &[]);
    same(
        d,
        &["-P"],
        "background { sh -c \"echo from-background > bg.tmp && mv bg.tmp bg.txt\" } foreground { sh -c \"while ! test -s bg.txt; do sleep 0.01; done\" } cat bg.txt\n",
        &[],
    );
    same(
        d,
        &["-P"],
        "if { if { true } true } foreground { if { false } true } importas r ? dump $r\n",
        &[],
    );
}

#[test]
fn redirections_environment_and_directory() {
    let dir = setup();
    let d = dir.path();
    same(
        d,
        &["-P"],
        "redirfd -r 0 input.txt sh -c \"cat; echo read\"\n",
        &[],
    );
    same(
        d,
        &["-P"],
        "foreground { redirfd -w 1 out.txt dump to-file } foreground { redirfd -a 1 out.txt dump appended } cat out.txt\n",
        &[],
    );
    same(
        d,
        &["-P"],
        "fdmove -c 2 1 sh -c \"echo to-stderr >&2\"\n",
        &[],
    );
    same(d, &["-P"], "fdmove 3 1 sh -c \"echo via-fd3 >&3\"\n", &[]);
    same(d, &["-P"], "export A 1 unexport FOO dump\n", &[]);
    same(d, &["-P"], "cd /tmp dump\n", &[]);
    same(d, &["-P"], "emptyenv -p dump\n", &[]);
    same(d, &["-P"], "exec dump via-exec\n", &[]);
    let out = same(d, &["-P"], "exit 7\n", &[]);
    assert_eq!(out.code, 7);
}

#[test]
fn positional_parameters_like_execlineb() {
    let dir = setup();
    let d = dir.path();
    // Default: pushed into the environment as #, 0, 1, ...; not substituted.
    same(d, &[], "dump $1 $@ $#\n", &["p", "q r"]);
    // -P: neither.
    same(d, &["-P"], "dump $1 $@\n", &["p", "q r"]);
    // -S: substituted in the script.
    same(d, &["-S2"], "dump $1 ${2}x $@ $#\n", &["p", "q r"]);
    same(d, &["-S0"], "dump $@ end\n", &[]);
    same(d, &["-S3"], "dump $1 $2 $3 x${2}y $@ end\n", &["only-one"]);
    same(
        d,
        &["-s1"],
        "dump $1 $2 $3 x${2}y $@ \"x$@y\" end\n",
        &["one", "two", "three"],
    );
}

#[test]
fn errors_give_the_same_exit_codes() {
    let dir = setup();
    let d = dir.path();
    assert_eq!(same(d, &["-P"], "nonexistent-program x\n", &[]).code, 127);
    assert_eq!(same(d, &["-P"], "dump {\n", &[]).code, 100);
    assert_eq!(same(d, &["-P"], "dump }\n", &[]).code, 100);
    same(d, &["-P"], "\n# only a comment\n", &[]);

    // `-c` with nothing after it is a usage error (100) in both, not a crash.
    let code = |interpreter: &[&str]| {
        let out = Command::new(interpreter[0])
            .args(&interpreter[1..])
            .arg("-c")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let bin = crate::support::bin();
    let (ours, message) = code(&[bin.to_str().unwrap(), "execlineb"]);
    assert_eq!(ours, code(&[REAL_EXECLINEB]).0, "{message}");
    assert_eq!(ours, Some(100));
    assert!(message.contains("-c needs a script"), "{message}");
}

#[test]
fn s6_echo_and_the_multi_call_names() {
    let dir = setup();
    let bin = crate::support::bin();
    let links = dir.path().join("command");
    let out = Command::new(&bin)
        .args(["install-commands"])
        .arg(&links)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let echo = Command::new(links.join("s6-echo"))
        .args(["-n", "a", "b"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&echo.stdout), "a b");
    let echo = Command::new(links.join("s6-echo"))
        .args(["-s", ",", "a", "b"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&echo.stdout), "a,b\n");
    // The execline-encoded argv other programs pass (a block as " word"... "") works too.
    let fg = Command::new(links.join("foreground"))
        .args([" sh", " -c", " echo inner", "", "echo", "outer"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&fg.stdout), "inner\nouter\n");
    // A script with the s6-overlay shebang runs through the installed name.
    let script = dir.path().join("shebang");
    crate::support::write_exec(
        &script,
        &format!(
            "#!{}/execlineb -P\nforeground {{ s6-echo hello }} s6-echo world\n",
            links.display()
        ),
    );
    let out = crate::support::output_of_new_program(
        Command::new(&script).env("PATH", format!("{}:/usr/bin:/bin", links.display())),
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello\nworld\n",
        "{out:?}"
    );
}

#[test]
fn s6_svc_rejects_unknown_letters_and_missing_directories_as_usage_errors() {
    let dir = setup();
    let links = dir.path().join("command");
    let out = Command::new(crate::support::bin())
        .arg("install-commands")
        .arg(&links)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    for (args, message) in [
        (&["-z", "svc"][..], "s6-svc: fatal: unknown option -z\n"),
        (
            &["-r"][..],
            "s6-svc: fatal: usage: s6-svc [-wu|-wU|-wd|-wD|-wr|-wR] [-T timeout] -abqhkti12pcyroduDUxO servicedir...\n",
        ),
        (&["-T"][..], "s6-svc: fatal: option -T needs a value\n"),
    ] {
        let out = Command::new(links.join("s6-svc"))
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(100), "{args:?}: {out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stderr), message, "{args:?}");
    }
}
