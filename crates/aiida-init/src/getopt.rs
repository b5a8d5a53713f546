//! The one option parser of the builtins, getopt-style as in skalibs' `subgetopt`, and the exit
//! codes of execline and s6: 100 for a usage error, 111 for a system error.
//!
//! Options come first: `-abc` sets flags `a`, `b` and `c`; a letter that takes a value takes
//! the rest of its word (`-n5`) or the next word (`-n 5`). `--` ends the options, and so does
//! the first word that is not an option: a lone `-`, or a `-` followed by a digit that is not
//! one of the command's letters (so `exit -1` or `s6-echo -5` keep their argument).

/// The exit code of a usage error (bad options, missing arguments).
pub const USAGE: i32 = 100;
/// The exit code of a system error (a file that cannot be read, a failed fork).
pub const SYSTEM: i32 = 111;

/// Print an execline-style fatal error and exit with `code`.
pub fn die(prog: &str, code: i32, msg: &str) -> ! {
    eprintln_whole!("{prog}: fatal: {msg}");
    std::process::exit(code)
}

/// What a command accepts: letters without a value, and letters that take one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    pub flags: &'static str,
    pub valued: &'static str,
}

impl Spec {
    pub const NONE: Spec = Spec {
        flags: "",
        valued: "",
    };

    fn knows(self, c: char) -> bool {
        self.flags.contains(c) || self.valued.contains(c)
    }
}

/// The options found, in order, and the index of the first word after them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Parsed {
    pub options: Vec<(char, String)>,
    pub next: usize,
}

impl Parsed {
    /// Whether flag `c` was given.
    pub fn has(&self, c: char) -> bool {
        self.options.iter().any(|(o, _)| *o == c)
    }
    /// The value of the last `c`.
    pub fn value(&self, c: char) -> Option<&str> {
        self.options
            .iter()
            .rev()
            .find(|(o, _)| *o == c)
            .map(|(_, v)| v.as_str())
    }
}

/// Why options are wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptionError {
    Unknown(char),
    MissingValue(char),
}

impl std::fmt::Display for OptionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OptionError::Unknown(c) => write!(f, "unknown option -{c}"),
            OptionError::MissingValue(c) => write!(f, "option -{c} needs a value"),
        }
    }
}

/// Parse the options of `args` from index `start` on.
pub fn parse<S: AsRef<str>>(args: &[S], start: usize, spec: Spec) -> Result<Parsed, OptionError> {
    let mut parsed = Parsed {
        options: Vec::new(),
        next: start,
    };
    while let Some(word) = args.get(parsed.next).map(AsRef::as_ref) {
        if word == "--" {
            parsed.next += 1;
            break;
        }
        let Some(letters) = word.strip_prefix('-').filter(|l| !l.is_empty()) else {
            break;
        };
        let first = letters.chars().next().unwrap_or('-');
        if first.is_ascii_digit() && !spec.knows(first) {
            break;
        }
        parsed.next += 1;
        for (k, c) in letters.char_indices() {
            if spec.valued.contains(c) {
                let rest = &letters[k + c.len_utf8()..];
                let value = if rest.is_empty() {
                    let value = args.get(parsed.next).ok_or(OptionError::MissingValue(c))?;
                    parsed.next += 1;
                    value.as_ref().to_string()
                } else {
                    rest.to_string()
                };
                parsed.options.push((c, value));
                break;
            }
            if !spec.flags.contains(c) {
                return Err(OptionError::Unknown(c));
            }
            parsed.options.push((c, String::new()));
        }
    }
    Ok(parsed)
}

/// [`parse`], exiting with a usage error (100) naming `prog` when the options are wrong.
pub fn parse_or_die(prog: &str, args: &[String], start: usize, spec: Spec) -> Parsed {
    parse(args, start, spec).unwrap_or_else(|e| die(prog, USAGE, &e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: Spec = Spec {
        flags: "ab1",
        valued: "nD",
    };

    fn opts(words: &[&str]) -> Result<(Vec<(char, String)>, usize), OptionError> {
        parse(words, 0, SPEC).map(|p| (p.options, p.next))
    }

    #[test]
    fn flags_values_and_the_end_of_options() {
        let got = opts(&["-ab", "-n5", "-D", "x y", "--", "-a"]).unwrap();
        assert_eq!(
            got,
            (
                vec![
                    ('a', String::new()),
                    ('b', String::new()),
                    ('n', "5".into()),
                    ('D', "x y".into())
                ],
                5
            )
        );
        assert_eq!(opts(&["-a", "prog", "-b"]).unwrap().1, 1);
        assert_eq!(opts(&["-", "x"]).unwrap().1, 0);
        assert_eq!(opts(&["-an", "3", "x"]).unwrap().1, 2);
    }

    #[test]
    fn a_digit_is_an_option_only_when_it_is_a_letter_of_the_command() {
        assert_eq!(opts(&["-1", "x"]).unwrap().1, 1);
        assert_eq!(opts(&["-5", "x"]).unwrap().1, 0);
    }

    #[test]
    fn unknown_letters_and_missing_values_are_errors() {
        assert_eq!(opts(&["-az"]), Err(OptionError::Unknown('z')));
        assert_eq!(opts(&["-a", "-n"]), Err(OptionError::MissingValue('n')));
        assert_eq!(OptionError::Unknown('z').to_string(), "unknown option -z");
    }
}
