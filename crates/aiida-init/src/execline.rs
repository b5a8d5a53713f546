//! The execline subset: lexer, static validation and interpreter.
//!
//! s6-rc `up`/`down` files, and `run`/`finish`/`data/check` scripts that start with
//! `#!/command/execlineb -P`, are execline command lines. This module reads them the way
//! Debian's real `execlineb` does and runs the subset that real service trees use:
//!
//! * the lexer: words split on whitespace, `#` comments (so shebang lines are comments),
//!   double quotes with C-style escapes, backslash escapes and line continuations, and
//!   `{ ... }` blocks;
//! * positional parameters as `execlineb` handles them: pushed into the environment (`#`, `0`,
//!   `1`, ...) by default, not at all with `-P`, substituted in the script with `-S`/`-s`;
//! * builtins run in this process: `foreground`, `background`, `if`, `importas`, `redirfd`,
//!   `fdmove`, `export`, `unexport`, `cd`, `exit`, `exec`, `emptyenv`, `s6-echo`, plus the
//!   s6-overlay helpers from [`super::commands`] (`with-contenv`, `s6-setuidgid`,
//!   `s6-notifyoncheck`, ...);
//! * anything else is an ordinary program, exec'd with the rest of the line as its arguments.
//!
//! After lexing, a block is encoded the way execline encodes it in argv (each word prefixed with
//! one space, terminated by an empty word), so the same interpreter also serves the multi-call
//! names (`/command/foreground`, `/command/if`, ...) that receive such argv from other programs.
//!
//! Variables are only substituted by `importas` (and `-S` positionals), exactly like execline:
//! `${FOO}` without `importas` stays literal. Constructs of execline outside the subset
//! (`multisubstitute`, `backtick`, `pipeline`, ...) are rejected by [`validate`] before any
//! service starts, with the file and the construct named.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use anyhow::{Result, bail};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, fork};

/// One lexed item: a word or a `{ ... }` block.
#[derive(Debug, Clone, PartialEq)]
pub enum Token {
    Word(String),
    Block(Vec<Token>),
}

/// Split an execline script into tokens. Errors carry the 1-based line number.
pub fn lex(source: &str) -> std::result::Result<Vec<Token>, String> {
    let chars: Vec<char> = source.chars().collect();
    let mut i = 0;
    let mut line = 1;
    let mut stack: Vec<(Vec<Token>, usize)> = vec![(Vec::new(), 0)];
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
            continue;
        }
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            continue;
        }
        // A word.
        let mut word = String::new();
        let mut quoted_any = false;
        let word_line = line;
        while i < chars.len() {
            let c = chars[i];
            if c.is_whitespace() {
                break;
            }
            if c == '"' {
                quoted_any = true;
                i += 1;
                loop {
                    if i >= chars.len() {
                        return Err(format!("line {word_line}: unterminated double quote"));
                    }
                    let c = chars[i];
                    if c == '"' {
                        i += 1;
                        break;
                    }
                    if c == '\n' {
                        line += 1;
                    }
                    if c == '\\' && i + 1 < chars.len() {
                        let (decoded, used) = quoted_escape(&chars[i + 1..]);
                        if chars[i + 1] == '\n' {
                            line += 1;
                        }
                        if let Some(d) = decoded {
                            word.push(d);
                        }
                        i += 1 + used;
                        continue;
                    }
                    word.push(c);
                    i += 1;
                }
                continue;
            }
            if c == '\\' {
                if i + 1 < chars.len() {
                    if chars[i + 1] == '\n' {
                        line += 1;
                    }
                    word.push(chars[i + 1]);
                    i += 2;
                } else {
                    i += 1;
                }
                continue;
            }
            word.push(c);
            i += 1;
        }
        if !quoted_any && word == "{" {
            stack.push((Vec::new(), word_line));
        } else if !quoted_any && word == "}" {
            if stack.len() == 1 {
                return Err(format!("line {word_line}: unmatched }}"));
            }
            let (block, _) = stack.pop().unwrap();
            stack.last_mut().unwrap().0.push(Token::Block(block));
        } else if quoted_any || !word.is_empty() {
            stack.last_mut().unwrap().0.push(Token::Word(word));
        }
    }
    if stack.len() > 1 {
        return Err(format!("line {}: unmatched {{", stack.last().unwrap().1));
    }
    Ok(stack.pop().unwrap().0)
}

/// Decode the escape after a backslash inside double quotes: (char or nothing, chars used).
fn quoted_escape(rest: &[char]) -> (Option<char>, usize) {
    let c = rest[0];
    let simple = match c {
        'n' => Some('\n'),
        't' => Some('\t'),
        'r' => Some('\r'),
        'a' => Some('\x07'),
        'b' => Some('\x08'),
        'v' => Some('\x0b'),
        'f' => Some('\x0c'),
        '\n' => return (None, 1),
        _ => None,
    };
    if let Some(s) = simple {
        return (Some(s), 1);
    }
    if c.is_ascii_digit() {
        let (radix, start, max) = if c == '0' && rest.get(1) == Some(&'x') {
            (16, 2, 2)
        } else if c == '0' {
            (8, 1, 3)
        } else {
            (10, 0, 3)
        };
        let digits: String = rest[start..]
            .iter()
            .take(max)
            .take_while(|d| d.is_digit(radix))
            .collect();
        if let Ok(v) = u32::from_str_radix(&digits, radix) {
            if let Some(ch) = char::from_u32(v) {
                return (Some(ch), start + digits.len());
            }
        }
        return (Some(c), 1);
    }
    (Some(c), 1)
}

/// Encode tokens into execline's argv form (blocks: words prefixed by a space, then "").
pub fn encode(tokens: &[Token]) -> Vec<String> {
    let mut out = Vec::new();
    for t in tokens {
        match t {
            Token::Word(w) => out.push(w.clone()),
            Token::Block(inner) => {
                for w in encode(inner) {
                    out.push(format!(" {w}"));
                }
                out.push(String::new());
            }
        }
    }
    out
}

/// execline programs this subset does not implement. Naming one is a validation error.
const UNSUPPORTED: &[&str] = &[
    "backtick",
    "case",
    "define",
    "dollarat",
    "elgetopt",
    "elgetpositionals",
    "elglob",
    "eltest",
    "envfile",
    "fdblock",
    "fdclose",
    "fdreserve",
    "fdswap",
    "forbacktickx",
    "forstdin",
    "forx",
    "getcwd",
    "getpid",
    "heredoc",
    "homeof",
    "ifelse",
    "ifte",
    "ifthenelse",
    "loopwhilex",
    "multidefine",
    "multisubstitute",
    "pipeline",
    "piperw",
    "runblock",
    "shift",
    "trap",
    "tryexec",
    "wait",
    "withstdinas",
    "execline-umask",
    "umask",
    "posix-umask",
];

/// What a builtin takes before the rest of the command line.
struct Shape {
    /// Option letters that take a value.
    valued_options: &'static str,
    /// Plain arguments after the options (not counting blocks).
    args: usize,
    /// Blocks after the arguments.
    blocks: usize,
    /// Whether a command line follows (a chain); false for terminal commands.
    chains: bool,
}

fn shape(name: &str) -> Option<Shape> {
    let s = |valued_options, args, blocks, chains| Shape {
        valued_options,
        args,
        blocks,
        chains,
    };
    Some(match name {
        "foreground" | "background" => s("", 0, 1, true),
        "if" => s("", 0, 1, true),
        "importas" => s("Dd", 2, 0, true),
        "redirfd" => s("", 2, 0, true),
        "fdmove" => s("", 2, 0, true),
        "export" => s("", 2, 0, true),
        "unexport" => s("", 1, 0, true),
        "cd" | "execline-cd" => s("", 1, 0, true),
        "exec" => s("a", 0, 0, true),
        "emptyenv" => s("", 0, 0, true),
        "with-contenv" => s("", 0, 0, true),
        "s6-setuidgid" => s("", 1, 0, true),
        "s6-envdir" => s("", 1, 0, true),
        "s6-notifyoncheck" => s("3stTwnc", 0, 0, true),
        "exit" | "s6-echo" | "printcontenv" | "s6-svc" | "halt" | "poweroff" | "reboot" => {
            s("s", 0, 0, false)
        }
        _ => return None,
    })
}

/// True when `name` (a bare command name) is answered by this interpreter in-process.
pub fn is_builtin(name: &str) -> bool {
    shape(name).is_some()
}

/// Check a lexed script against the subset. The error names the construct at fault.
pub fn validate(tokens: &[Token]) -> Result<()> {
    validate_line(tokens, true)
}

fn validate_line(tokens: &[Token], top: bool) -> Result<()> {
    let mut i = 0;
    loop {
        let Some(first) = tokens.get(i) else {
            if top && i == 0 {
                return Ok(()); // an empty script does nothing, successfully
            }
            bail!("a command line is missing (empty block or nothing after a builtin)");
        };
        let name = match first {
            Token::Word(w) => w.as_str(),
            Token::Block(_) => bail!("a `{{ }}` block stands where a command was expected"),
        };
        if UNSUPPORTED.contains(&name) {
            bail!("`{name}` is an execline construct aiida-init does not support");
        }
        let Some(sh) = shape(name) else {
            // A plain program: it takes every remaining word.
            if tokens[i + 1..].iter().any(|t| matches!(t, Token::Block(_))) {
                bail!(
                    "a `{{ }}` block is passed to `{name}`, which is not a supported execline construct"
                );
            }
            return Ok(());
        };
        i += 1;
        // Options.
        while let Some(Token::Word(w)) = tokens.get(i) {
            if w == "--" {
                i += 1;
                break;
            }
            if !w.starts_with('-')
                || w.len() < 2
                || w[1..].starts_with(|c: char| c.is_ascii_digit()) && name != "s6-notifyoncheck"
            {
                break;
            }
            let letters: Vec<char> = w[1..].chars().collect();
            i += 1;
            for (k, l) in letters.iter().enumerate() {
                if sh.valued_options.contains(*l) {
                    if k + 1 == letters.len() {
                        i += 1; // the value is the next word
                    }
                    break;
                }
            }
        }
        for _ in 0..sh.args {
            match tokens.get(i) {
                Some(Token::Word(_)) => i += 1,
                _ => bail!("`{name}` is missing an argument"),
            }
        }
        for _ in 0..sh.blocks {
            match tokens.get(i) {
                Some(Token::Block(inner)) => {
                    validate_line(inner, false)
                        .map_err(|e| anyhow::anyhow!("in the block of `{name}`: {e}"))?;
                    i += 1;
                }
                _ => bail!("`{name}` needs a `{{ ... }}` block"),
            }
        }
        if !sh.chains {
            if tokens[i..].iter().any(|t| matches!(t, Token::Block(_))) {
                bail!("a `{{ }}` block is passed to `{name}`, which takes none");
            }
            return Ok(());
        }
    }
}

/// Read, lex and validate an execline file. Errors name the file.
pub fn load_file(path: &Path) -> Result<Vec<Token>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("{}: cannot read: {e}", path.display()))?;
    let tokens = lex(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    validate(&tokens).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(tokens)
}

// ---------------------------------------------------------------------------------------------
// Interpreter

/// Print an execline-style fatal error and exit with `code`.
pub fn die(prog: &str, code: i32, msg: &str) -> ! {
    eprintln!("{prog}: fatal: {msg}");
    std::process::exit(code)
}

/// `execlineb [-P|-p|-S n|-s n|-q|-w|-W] (-c SCRIPT | FILE) ARGS...`
pub fn execlineb_main(args: &[String]) -> ! {
    let mut i = 0;
    let mut push_env = true;
    let mut substitute: Option<(usize, bool)> = None;
    let mut inline: Option<String> = None;
    while i < args.len() {
        let a = &args[i];
        if a == "--" {
            i += 1;
            break;
        }
        if !a.starts_with('-') || a == "-" {
            break;
        }
        let letters: Vec<char> = a[1..].chars().collect();
        i += 1;
        let mut k = 0;
        while k < letters.len() {
            match letters[k] {
                'P' => {
                    push_env = false;
                    substitute = None;
                }
                'p' => push_env = true,
                l @ ('S' | 's') => {
                    let n = option_value(&letters, k, args, &mut i).unwrap_or_default();
                    substitute = Some((n.parse().unwrap_or(0), l == 's'));
                    push_env = false;
                    k = letters.len();
                    continue;
                }
                'c' => {
                    let Some(script) = option_value(&letters, k, args, &mut i) else {
                        die(
                            "execlineb",
                            100,
                            "-c needs a script: execlineb -c SCRIPT ARGS...",
                        )
                    };
                    inline = Some(script);
                    k = letters.len();
                    continue;
                }
                'q' | 'w' | 'W' | 'e' => {}
                other => die("execlineb", 100, &format!("unknown option -{other}")),
            }
            k += 1;
        }
    }
    let (source, arg0, positionals) = match inline {
        Some(s) => (s, "execlineb".to_string(), args[i..].to_vec()),
        None => {
            let Some(file) = args.get(i) else {
                die("execlineb", 100, "usage: execlineb [-P|-S n] FILE ARGS...")
            };
            match std::fs::read_to_string(file) {
                Ok(s) => (s, file.clone(), args[i + 1..].to_vec()),
                Err(e) => die("execlineb", 111, &format!("unable to read {file}: {e}")),
            }
        }
    };
    let mut tokens = match lex(&source) {
        Ok(t) => t,
        Err(e) => die("execlineb", 100, &e.replace("line ", "at line ")),
    };
    if let Some((min, skip_in_at)) = substitute {
        if positionals.len() < min {
            eprintln!(
                "execlineb: warning: too few arguments: expecting at least {min} but got {}",
                positionals.len()
            );
        }
        tokens = substitute_positionals(&tokens, &arg0, &positionals, min, skip_in_at);
    }
    if push_env {
        set_env("#", &positionals.len().to_string());
        set_env("0", &arg0);
        for (n, p) in positionals.iter().enumerate() {
            set_env(&(n + 1).to_string(), p);
        }
    }
    let argv = encode(&tokens);
    if argv.is_empty() {
        std::process::exit(0);
    }
    run(argv)
}

/// `-S n` / `-s n`: `$0`..`$9`, `${N}` and `$#` are substituted like importas'd variables
/// (missing ones up to n become empty words); a word that is exactly `$@` becomes the
/// arguments (after the first n with `-s`).
fn substitute_positionals(
    tokens: &[Token],
    arg0: &str,
    args: &[String],
    min: usize,
    skip_in_at: bool,
) -> Vec<Token> {
    let mut vars: Vec<(String, Vec<String>)> = vec![
        ("#".into(), vec![args.len().to_string()]),
        ("0".into(), vec![arg0.to_string()]),
    ];
    for n in 1..=args.len().max(min) {
        vars.push((
            n.to_string(),
            vec![args.get(n - 1).cloned().unwrap_or_default()],
        ));
    }
    let at: Vec<String> = if skip_in_at {
        args.iter().skip(min).cloned().collect()
    } else {
        args.to_vec()
    };
    let mut out = Vec::new();
    for t in tokens {
        match t {
            Token::Word(w) if w == "$@" || w == "${@}" => {
                out.extend(at.iter().cloned().map(Token::Word))
            }
            Token::Word(w) => {
                let mut words = vec![w.clone()];
                // Longest names first, so that $12 is not read as $1 followed by 2.
                for (name, value) in vars.iter().rev() {
                    words = words
                        .iter()
                        .flat_map(|w| substitute_word(w, name, Some(value)))
                        .collect();
                }
                out.extend(words.into_iter().map(Token::Word));
            }
            Token::Block(inner) => out.push(Token::Block(substitute_positionals(
                inner, arg0, args, min, skip_in_at,
            ))),
        }
    }
    out
}

fn set_env(key: &str, value: &str) {
    // SAFETY: the interpreter is single-threaded.
    unsafe { std::env::set_var(key, value) }
}

fn remove_env(key: &str) {
    // SAFETY: the interpreter is single-threaded.
    unsafe { std::env::remove_var(key) }
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

/// Take a block from execline-encoded argv at `i`: returns the decoded inner argv and the index
/// after the terminator.
fn take_block(argv: &[String], mut i: usize, prog: &str) -> (Vec<String>, usize) {
    let mut inner = Vec::new();
    loop {
        let Some(a) = argv.get(i) else {
            die(prog, 100, "unterminated block")
        };
        i += 1;
        if a.is_empty() {
            return (inner, i);
        }
        match a.strip_prefix(' ') {
            Some(w) => inner.push(w.to_string()),
            None => die(prog, 100, "unterminated block"),
        }
    }
}

/// The value of the option letter `letters[k]`: the rest of its word (`-n5`), or else the
/// next argument `args[*i]` (`-n 5`), which is then consumed; `None` when there is none.
pub(super) fn option_value(
    letters: &[char],
    k: usize,
    args: &[String],
    i: &mut usize,
) -> Option<String> {
    let rest: String = letters[k + 1..].iter().collect();
    if !rest.is_empty() {
        return Some(rest);
    }
    let next = args.get(*i).cloned();
    if next.is_some() {
        *i += 1;
    }
    next
}

/// Parse `-x`-style options; returns (flags with values, next index).
fn take_options(argv: &[String], mut i: usize, valued: &str) -> (Vec<(char, String)>, usize) {
    let mut opts = Vec::new();
    while let Some(a) = argv.get(i) {
        if a == "--" {
            i += 1;
            break;
        }
        if !a.starts_with('-') || a.len() < 2 {
            break;
        }
        let letters: Vec<char> = a[1..].chars().collect();
        if letters[0].is_ascii_digit() && !valued.is_empty() && argv[0] != "s6-notifyoncheck" {
            break;
        }
        i += 1;
        let mut k = 0;
        while k < letters.len() {
            let l = letters[k];
            if valued.contains(l) {
                let value = option_value(&letters, k, argv, &mut i).unwrap_or_default();
                opts.push((l, value));
                break;
            }
            opts.push((l, String::new()));
            k += 1;
        }
    }
    (opts, i)
}

/// Run a child that interprets `block`, wait for it; returns its wait status.
fn spawn_block(block: Vec<String>, prog: &str) -> (i32, WaitStatus) {
    if block.is_empty() {
        return (0, WaitStatus::Exited(nix::unistd::Pid::from_raw(0), 0));
    }
    // SAFETY: the interpreter is single-threaded; the child only runs the interpreter.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => run(block),
        Ok(ForkResult::Parent { child }) => loop {
            match waitpid(child, None) {
                Ok(s @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => {
                    return (child.as_raw(), s);
                }
                Ok(_) => continue,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => die(prog, 111, &format!("unable to wait: {e}")),
            }
        },
        Err(e) => die(prog, 111, &format!("unable to fork: {e}")),
    }
}

/// Run execline-encoded argv in this process: builtins are interpreted, the final program is
/// exec'd. Never returns.
pub fn run(argv: Vec<String>) -> ! {
    let mut argv = argv;
    loop {
        let Some(first) = argv.first().cloned() else {
            std::process::exit(0)
        };
        let name = first.as_str();
        match name {
            "foreground" | "background" => {
                let (_, i) = take_options(&argv, 1, "");
                let (block, next) = take_block(&argv, i, name);
                if name == "background" {
                    // SAFETY: single-threaded; the child only runs the interpreter.
                    match unsafe { fork() } {
                        Ok(ForkResult::Child) => run(block),
                        Ok(ForkResult::Parent { .. }) => {}
                        Err(e) => die(name, 111, &format!("unable to fork: {e}")),
                    }
                } else {
                    let (_, status) = spawn_block(block, name);
                    let code = match status {
                        WaitStatus::Exited(_, c) => c,
                        WaitStatus::Signaled(_, s, _) => 256 + s as i32,
                        _ => 0,
                    };
                    set_env("?", &code.to_string());
                }
                argv = argv[next..].to_vec();
            }
            "if" => {
                let (opts, i) = take_options(&argv, 1, "");
                let negate = opts.iter().any(|(o, _)| *o == 'n');
                let zero_on_fail = opts.iter().any(|(o, _)| *o == 't');
                let (block, next) = take_block(&argv, i, name);
                let (_, status) = spawn_block(block, name);
                let (ok, code) = match status {
                    WaitStatus::Exited(_, c) => (c == 0, c),
                    WaitStatus::Signaled(_, s, _) => {
                        if !negate {
                            eprintln!("if: fatal: child crashed with signal {}", s as i32);
                        }
                        (false, 128 + s as i32)
                    }
                    _ => (false, 111),
                };
                if ok == negate {
                    let code = if zero_on_fail {
                        0
                    } else if negate {
                        1
                    } else {
                        code
                    };
                    std::process::exit(code);
                }
                argv = argv[next..].to_vec();
            }
            "importas" => {
                let (opts, i) = take_options(&argv, 1, "Dd");
                let (Some(var), Some(envvar)) = (argv.get(i).cloned(), argv.get(i + 1).cloned())
                else {
                    die(
                        name,
                        100,
                        "usage: importas [-i|-D default] [-u] [-s] [-d delim] var envvar prog...",
                    )
                };
                let mut default = None;
                let mut insist = false;
                let mut unexport = false;
                let mut split = false;
                let mut delim = " \n\t".to_string();
                for (o, v) in opts {
                    match o {
                        'D' => default = Some(v),
                        'i' => insist = true,
                        'u' => unexport = true,
                        's' => split = true,
                        'd' => {
                            delim = v;
                            split = true;
                        }
                        _ => {}
                    }
                }
                let value = std::env::var(&envvar).ok().or(default);
                if value.is_none() && insist {
                    die(name, 100, &format!("{envvar} not set"));
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
                if unexport {
                    remove_env(&envvar);
                }
                argv = argv[i + 2..]
                    .iter()
                    .flat_map(|w| substitute_word(w, &var, values.as_deref()))
                    .collect();
            }
            "redirfd" => {
                let (opts, i) = take_options(&argv, 1, "");
                let (Some(fd), Some(file)) = (argv.get(i), argv.get(i + 1)) else {
                    die(
                        name,
                        100,
                        "usage: redirfd -[rwuacx] [-n] [-b] fd file prog...",
                    )
                };
                let fd: i32 = fd
                    .parse()
                    .unwrap_or_else(|_| die(name, 100, &format!("invalid fd: {fd}")));
                let mut flags = libc::O_RDONLY;
                let mut nonblock_open = false;
                for (o, _) in &opts {
                    flags = match o {
                        'r' => libc::O_RDONLY,
                        'w' => libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC,
                        'u' => libc::O_RDWR,
                        'a' => libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND,
                        'c' => libc::O_WRONLY | libc::O_APPEND,
                        'x' => libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
                        'n' => {
                            nonblock_open = true;
                            flags
                        }
                        _ => flags,
                    };
                }
                let cpath = CString::new(file.as_bytes()).unwrap();
                let open_flags = flags | if nonblock_open { libc::O_NONBLOCK } else { 0 };
                // SAFETY: plain libc calls on a valid C string.
                let newfd = unsafe { libc::open(cpath.as_ptr(), open_flags, 0o666) };
                if newfd < 0 {
                    die(
                        name,
                        111,
                        &format!("unable to open {file}: {}", std::io::Error::last_os_error()),
                    );
                }
                move_fd(newfd, fd, name);
                if !opts.iter().any(|(o, _)| *o == 'b') && nonblock_open {
                    // SAFETY: fd is open.
                    unsafe {
                        let fl = libc::fcntl(fd, libc::F_GETFL);
                        libc::fcntl(fd, libc::F_SETFL, fl & !libc::O_NONBLOCK);
                    }
                }
                argv = argv[i + 2..].to_vec();
            }
            "fdmove" => {
                let (opts, i) = take_options(&argv, 1, "");
                let (Some(to), Some(from)) = (argv.get(i), argv.get(i + 1)) else {
                    die(name, 100, "usage: fdmove [-c] to from prog...")
                };
                let to: i32 = to
                    .parse()
                    .unwrap_or_else(|_| die(name, 100, &format!("invalid fd: {to}")));
                let from: i32 = from
                    .parse()
                    .unwrap_or_else(|_| die(name, 100, &format!("invalid fd: {from}")));
                if opts.iter().any(|(o, _)| *o == 'c') {
                    // SAFETY: dup2 on fds.
                    if unsafe { libc::dup2(from, to) } < 0 {
                        die(
                            name,
                            111,
                            &format!(
                                "unable to copy fd {from} to {to}: {}",
                                std::io::Error::last_os_error()
                            ),
                        );
                    }
                } else {
                    move_fd(from, to, name);
                }
                argv = argv[i + 2..].to_vec();
            }
            "export" => {
                let (Some(k), Some(v)) = (argv.get(1), argv.get(2)) else {
                    die(name, 100, "usage: export var value prog...")
                };
                set_env(k, v);
                argv = argv[3..].to_vec();
            }
            "unexport" => {
                let Some(k) = argv.get(1) else {
                    die(name, 100, "usage: unexport var prog...")
                };
                remove_env(k);
                argv = argv[2..].to_vec();
            }
            "cd" | "execline-cd" => {
                let Some(d) = argv.get(1) else {
                    die(name, 100, "usage: cd dir prog...")
                };
                if let Err(e) = std::env::set_current_dir(d) {
                    die(name, 111, &format!("unable to chdir to {d}: {e}"));
                }
                argv = argv[2..].to_vec();
            }
            "exec" => {
                let (_, i) = take_options(&argv, 1, "a");
                argv = argv[i..].to_vec();
            }
            "emptyenv" => {
                let (opts, i) = take_options(&argv, 1, "");
                let keep_path = opts.iter().any(|(o, _)| *o == 'p');
                for (k, _) in std::env::vars_os() {
                    if keep_path && k == "PATH" {
                        continue;
                    }
                    // SAFETY: single-threaded.
                    unsafe { std::env::remove_var(&k) };
                }
                argv = argv[i..].to_vec();
            }
            "exit" => {
                let code = argv.get(1).and_then(|c| c.parse::<i32>().ok()).unwrap_or(0);
                std::process::exit(code);
            }
            "s6-echo" => {
                let (opts, i) = take_options(&argv, 1, "s");
                let newline = !opts.iter().any(|(o, _)| *o == 'n');
                let sep = opts
                    .iter()
                    .rev()
                    .find(|(o, _)| *o == 's')
                    .map(|(_, v)| v.clone())
                    .unwrap_or(" ".into());
                let mut out = argv[i..].join(&sep);
                if newline {
                    out.push('\n');
                }
                use std::io::Write;
                let ok = std::io::stdout()
                    .write_all(out.as_bytes())
                    .and_then(|_| std::io::stdout().flush());
                std::process::exit(if ok.is_ok() { 0 } else { 111 });
            }
            _ => {
                if let Some(next) = super::commands::run_chain_builtin(&argv) {
                    argv = next;
                    continue;
                }
                exec_program(&argv)
            }
        }
    }
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
                111,
                &format!(
                    "unable to move fd {from} to {to}: {}",
                    std::io::Error::last_os_error()
                ),
            );
        }
        libc::close(from);
    }
}

/// exec a program with PATH search; exits 127 (not found) or 126 (other errors) on failure.
pub fn exec_program(argv: &[String]) -> ! {
    let cargs: Vec<CString> = argv
        .iter()
        .map(|a| {
            CString::new(a.as_bytes())
                .unwrap_or_else(|_| die("execlineb", 100, "argument contains a NUL byte"))
        })
        .collect();
    let err = nix::unistd::execvp(&cargs[0], &cargs).unwrap_err();
    let code = if err == nix::errno::Errno::ENOENT {
        127
    } else {
        126
    };
    die(
        "execlineb",
        code,
        &format!("unable to exec {}: {}", argv[0], err.desc()),
    )
}

/// True when the file's first line is an execline shebang (`#!.../execlineb ...`).
pub fn has_execline_shebang(path: &Path) -> bool {
    std::fs::read(path)
        .map(|b| {
            let first = b.split(|c| *c == b'\n').next().unwrap_or(&[]);
            first.starts_with(b"#!")
                && std::ffi::OsStr::from_bytes(first)
                    .to_string_lossy()
                    .split_whitespace()
                    .next()
                    .is_some_and(|w| w.ends_with("execlineb"))
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        encode(&lex(s).unwrap())
    }

    #[test]
    fn lexes_quotes_comments_and_blocks() {
        assert_eq!(
            words("#!/bin/x -P\na \"b c\" # no\n{ d { e } }"),
            vec!["a", "b c", " d", "  e", " ", ""]
        );
        assert_eq!(
            words("\"a\\tb\" x\\ y \"\\0x41\\0101\\101\""),
            vec!["a\tb", "x y", "AAe"]
        );
        assert!(lex("a }").unwrap_err().contains("unmatched }"));
        assert!(lex("a {").unwrap_err().contains("unmatched {"));
    }

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

    #[test]
    fn validation_names_the_construct() {
        let err = validate(&lex("multisubstitute { importas a A } echo").unwrap()).unwrap_err();
        assert!(err.to_string().contains("`multisubstitute`"), "{err}");
        assert!(validate(&lex("with-contenv foreground { s6-echo hi } if { true } importas -D x X X redirfd -w 1 /dev/null fdmove -c 2 1 sh -c \"exit 0\"").unwrap()).is_ok());
        assert!(validate(&lex("echo { x }").unwrap()).is_err());
        assert!(validate(&lex("if echo").unwrap()).is_err());
    }
}
