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
//! * the builtins of [`super::builtins`] (execline's own programs and the s6 helpers) run in
//!   this process, anything else is an ordinary program, exec'd with the rest of the line as
//!   its arguments; [`validate`] checks their shapes before anything runs.
//!
//! After lexing, a block is encoded the way execline encodes it in argv (each word prefixed with
//! one space, terminated by an empty word), so the same interpreter also serves the multi-call
//! names (`/command/foreground`, `/command/if`, ...) that receive such argv from other programs.
//!
//! Variables are only substituted by `importas` (and `-S` positionals), exactly like execline:
//! `${FOO}` without `importas` stays literal. Constructs of execline outside the subset
//! (`multisubstitute`, `backtick`, `pipeline`, ...) are rejected by [`validate`] before any
//! service starts, with the file and the construct named.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use anyhow::{Result, anyhow, bail};

use super::builtins;
use super::execline_programs::{set_env, substitute_word};
use super::getopt::{self, SYSTEM, USAGE, die};

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
        let Some(sh) = builtins::shape(name) else {
            // A plain program: it takes every remaining word.
            if tokens[i + 1..].iter().any(|t| matches!(t, Token::Block(_))) {
                bail!(
                    "a `{{ }}` block is passed to `{name}`, which is not a supported execline construct"
                );
            }
            return Ok(());
        };
        i += 1;
        // Options, parsed as the builtin will parse them.
        let words: Vec<&str> = tokens[i..]
            .iter()
            .map_while(|t| match t {
                Token::Word(w) => Some(w.as_str()),
                Token::Block(_) => None,
            })
            .collect();
        let options = getopt::parse(&words, 0, sh.options).map_err(|e| anyhow!("`{name}`: {e}"))?;
        i += options.next;
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
// The script interpreter

/// `execlineb [-P|-p|-S n|-s n|-q|-w|-W] (-c SCRIPT | FILE) ARGS...`
pub fn execlineb_main(args: &[String]) -> ! {
    const SPEC: getopt::Spec = getopt::Spec {
        flags: "PpqwWe",
        valued: "Ssc",
    };
    let parsed = getopt::parse(args, 0, SPEC).unwrap_or_else(|e| {
        let message = match e {
            getopt::OptionError::MissingValue('c') => {
                "-c needs a script: execlineb -c SCRIPT ARGS...".to_string()
            }
            e => e.to_string(),
        };
        die(builtins::EXECLINEB, USAGE, &message)
    });
    let i = parsed.next;
    let mut push_env = true;
    let mut substitute: Option<(usize, bool)> = None;
    let mut inline: Option<String> = None;
    for (option, value) in parsed.options {
        match option {
            'P' => {
                push_env = false;
                substitute = None;
            }
            'p' => push_env = true,
            'S' | 's' => {
                let n = value.parse().unwrap_or_else(|_| {
                    die(
                        builtins::EXECLINEB,
                        USAGE,
                        &format!("-{option}: `{value}` is not a number"),
                    )
                });
                substitute = Some((n, option == 's'));
                push_env = false;
            }
            'c' => inline = Some(value),
            _ => {}
        }
    }
    let (source, arg0, positionals) = match inline {
        Some(s) => (s, "execlineb".to_string(), args[i..].to_vec()),
        None => {
            let Some(file) = args.get(i) else {
                die(
                    builtins::EXECLINEB,
                    USAGE,
                    "usage: execlineb [-P|-S n] FILE ARGS...",
                )
            };
            match std::fs::read_to_string(file) {
                Ok(s) => (s, file.clone(), args[i + 1..].to_vec()),
                Err(e) => die(
                    builtins::EXECLINEB,
                    SYSTEM,
                    &format!("unable to read {file}: {e}"),
                ),
            }
        }
    };
    let mut tokens = match lex(&source) {
        Ok(t) => t,
        Err(e) => die(builtins::EXECLINEB, USAGE, &e.replace("line ", "at line ")),
    };
    if let Some((min, skip_in_at)) = substitute {
        if positionals.len() < min {
            eprintln_whole!(
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
    builtins::run(argv)
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
                out.extend(at.iter().cloned().map(Token::Word));
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

/// True when the file's first line is an execline shebang (`#!.../execlineb ...`).
pub fn has_execline_shebang(path: &Path) -> bool {
    std::fs::read(path).is_ok_and(|b| {
        let first = b.split(|c| *c == b'\n').next().unwrap_or(&[]);
        first.starts_with(b"#!")
            && std::ffi::OsStr::from_bytes(first)
                .to_string_lossy()
                .split_whitespace()
                .next()
                .is_some_and(|w| w.ends_with("execlineb"))
    })
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
    fn validation_names_the_construct() {
        let err = validate(&lex("multisubstitute { importas a A } echo").unwrap()).unwrap_err();
        assert!(err.to_string().contains("`multisubstitute`"), "{err}");
        assert!(validate(&lex("with-contenv foreground { s6-echo hi } if { true } importas -D x X X redirfd -w 1 /dev/null fdmove -c 2 1 sh -c \"exit 0\"").unwrap()).is_ok());
        assert!(validate(&lex("echo { x }").unwrap()).is_err());
        assert!(validate(&lex("if echo").unwrap()).is_err());
        let err =
            validate(&lex("foreground { s6-svc -z /run/service/x } true").unwrap()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "in the block of `foreground`: `s6-svc`: unknown option -z"
        );
    }
}
