//! What every builtin program is: the [`Shape`] of its command line, what it receives
//! ([`Invocation`], with the [`Context`] of the interpreter) and what it returns ([`Next`]).
//! The table that lists them is [`super::builtins`].

use std::path::Path;
use std::process::Command;

use super::getopt::{Parsed, Spec};

/// What a builtin takes before the rest of the command line.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Its options, parsed by [`super::getopt`] before it runs.
    pub options: Spec,
    /// Plain arguments after the options (not counting blocks).
    pub args: usize,
    /// `{ ... }` blocks after the arguments.
    pub blocks: usize,
    /// Whether a command line follows (a chain); false for commands that end the line.
    pub chains: bool,
}

impl Shape {
    /// Options, `args` words and `blocks` blocks, then the rest of the command line.
    pub const fn chain(
        flags: &'static str,
        valued: &'static str,
        args: usize,
        blocks: usize,
    ) -> Shape {
        Shape {
            options: Spec { flags, valued },
            args,
            blocks,
            chains: true,
        }
    }
    /// Options, then arguments of its own: nothing runs after it.
    pub const fn last(flags: &'static str, valued: &'static str) -> Shape {
        Shape {
            options: Spec { flags, valued },
            args: 0,
            blocks: 0,
            chains: false,
        }
    }
}

/// What the interpreter lends to builtins: how to run a block and a script.
pub struct Context {
    /// Interpret execline-encoded argv in this process (a forked child). Never returns.
    pub run_block: fn(Vec<String>) -> !,
    /// A command that runs a script file (through this binary when its shebang is ours).
    pub script_command: fn(&Path) -> Command,
}

/// One call of a builtin: its name, its options and the words after them.
pub struct Invocation<'a> {
    pub name: &'a str,
    pub options: Parsed,
    /// The words after the options (blocks still encoded).
    pub args: &'a [String],
    pub context: &'a Context,
}

/// What happens after a builtin ran.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Go on with this command line.
    Chain(Vec<String>),
    /// Exit with this code.
    Exit(i32),
}

/// A builtin's implementation.
pub type Run = fn(&Invocation) -> Next;
