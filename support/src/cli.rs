//! Command-line helpers over `lexopt`, for the options the examples share
//! and the error texts they print (before the usage, with exit status 2).

pub use lexopt::{Arg, Parser};
use std::process::ExitCode;

/// What `main` makes of its parsed command line: the options; for
/// `Ok(None)` (help was asked for) the usage on stdout and exit status 0;
/// for an error `PROG: ERROR`, a blank line and the usage on stderr, and
/// exit status 2.
pub fn or_usage<T>(
    prog: &str,
    usage: &str,
    parsed: Result<Option<T>, String>,
) -> Result<T, ExitCode> {
    match parsed {
        Ok(Some(opts)) => Ok(opts),
        Ok(None) => {
            println!("{usage}");
            Err(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{prog}: {e}\n\n{usage}");
            Err(ExitCode::from(2))
        }
    }
}

/// The exit status of a finished run: 0, or 1 after `PROG: error: ERROR` on
/// stderr.
pub fn exit_status(prog: &str, done: Result<(), String>) -> ExitCode {
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{prog}: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The next argument, with lexopt's errors as text.
pub fn next(p: &mut Parser) -> Result<Option<Arg<'_>>, String> {
    p.next().map_err(|e| e.to_string())
}

/// "unknown argument ..." for an argument no option takes.
pub fn unknown(arg: Arg<'_>) -> String {
    let raw = match arg {
        Arg::Short(c) => format!("-{c}"),
        Arg::Long(l) => format!("--{l}"),
        Arg::Value(v) => v.to_string_lossy().into_owned(),
    };
    format!("unknown argument {raw:?}")
}

/// The value of option `opt` (`--opt VALUE` or `--opt=VALUE`). A missing
/// value, or one that looks like the next option (`--...`), is
/// "`opt` needs `what`".
pub fn value(p: &mut Parser, opt: &str, what: &str) -> Result<String, String> {
    let needs = || format!("{opt} needs {what}");
    let v = match p.value() {
        Ok(v) => v,
        Err(lexopt::Error::MissingValue { .. }) => return Err(needs()),
        Err(e) => return Err(e.to_string()),
    };
    let v = v
        .into_string()
        .map_err(|v| format!("{opt}: not valid UTF-8: {v:?}"))?;
    if v.starts_with("--") {
        return Err(needs());
    }
    Ok(v)
}

/// The value of `--runs`: a number >= 1.
pub fn runs(p: &mut Parser) -> Result<usize, String> {
    let v = value(p, "--runs", "a number")?;
    match v.parse() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("--runs: not a positive number: {v:?}")),
    }
}

/// The value of `--only`: comma-separated names, each one of `known`.
pub fn only(p: &mut Parser, known: &[&str]) -> Result<Vec<String>, String> {
    let v = value(p, "--only", "workload names")?;
    let names: Vec<String> = v.split(',').map(|s| s.trim().to_owned()).collect();
    for n in &names {
        if !known.contains(&n.as_str()) {
            return Err(format!(
                "--only: unknown workload {n:?} (known: {})",
                known.join(", ")
            ));
        }
    }
    Ok(names)
}

/// Splits a command line the way a POSIX shell would (quotes and
/// backslashes; no variables, globs or redirections), with `shlex`: the
/// `--cmd 'PROGRAM ARGS...'` value of `compare`. An empty command, or one
/// with an unclosed quote, is an error that says so.
pub fn split_command(line: &str) -> Result<Vec<String>, String> {
    match shlex::split(line) {
        None => Err(format!(
            "--cmd: unbalanced quotes or a trailing backslash in {line:?}"
        )),
        Some(words) if words.is_empty() => Err("--cmd needs a program to run".to_owned()),
        Some(words) => Ok(words),
    }
}

/// Whether workload `name` is selected by an `--only` list (all are
/// without one).
pub fn selected(only: &Option<Vec<String>>, name: &str) -> bool {
    only.as_ref().is_none_or(|o| o.iter().any(|n| n == name))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN: &[&str] = &["json", "maps"];

    #[derive(Debug, PartialEq)]
    struct Parsed {
        quick: bool,
        runs: usize,
        only: Option<Vec<String>>,
        json: Option<String>,
    }

    /// Parses like the examples do: `--quick`, `--runs`, `--only`, `--json`.
    fn parse(args: &[&str]) -> Result<Parsed, String> {
        let mut p = Parser::from_args(args.iter().copied());
        let mut o = Parsed {
            quick: false,
            runs: 3,
            only: None,
            json: None,
        };
        while let Some(arg) = next(&mut p)? {
            match arg {
                Arg::Long("quick") => o.quick = true,
                Arg::Long("runs") => o.runs = runs(&mut p)?,
                Arg::Long("only") => o.only = Some(only(&mut p, KNOWN)?),
                Arg::Long("json") => o.json = Some(value(&mut p, "--json", "a file path")?),
                arg => return Err(unknown(arg)),
            }
        }
        Ok(o)
    }

    #[test]
    fn good_arguments() {
        let default = Parsed {
            quick: false,
            runs: 3,
            only: None,
            json: None,
        };
        assert_eq!(parse(&[]), Ok(default));
        let o = parse(&["--quick", "--runs", "5", "--only", "maps, json"]).unwrap();
        assert!(o.quick);
        assert_eq!(o.runs, 5);
        assert_eq!(o.only, Some(vec!["maps".to_owned(), "json".to_owned()]));
        assert_eq!(o.json, None);
        assert_eq!(parse(&["--runs=2"]).map(|o| o.runs), Ok(2));
        assert_eq!(
            parse(&["--json", "out/x.json"]).map(|o| o.json),
            Ok(Some("out/x.json".to_owned()))
        );
        assert!(selected(&None, "json"));
        assert!(!selected(&Some(vec!["maps".to_owned()]), "json"));
    }

    #[test]
    fn bad_arguments() {
        assert_eq!(
            parse(&["--bogus"]),
            Err(r#"unknown argument "--bogus""#.into())
        );
        assert_eq!(parse(&["-x"]), Err(r#"unknown argument "-x""#.into()));
        assert_eq!(parse(&["extra"]), Err(r#"unknown argument "extra""#.into()));
        assert_eq!(parse(&["--runs"]), Err("--runs needs a number".into()));
        assert_eq!(
            parse(&["--runs", "--quick"]),
            Err("--runs needs a number".into())
        );
        assert_eq!(
            parse(&["--runs", "0"]),
            Err(r#"--runs: not a positive number: "0""#.into())
        );
        assert_eq!(
            parse(&["--only", "json,nope"]),
            Err(r#"--only: unknown workload "nope" (known: json, maps)"#.into())
        );
        assert_eq!(parse(&["--json"]), Err("--json needs a file path".into()));
        assert!(parse(&["--quick=yes"]).is_err());
    }

    #[test]
    fn command_lines() {
        assert_eq!(
            split_command(r#"python3 -c 'print("a b")' "two words" back\ slash"#),
            Ok(vec![
                "python3".to_owned(),
                "-c".to_owned(),
                r#"print("a b")"#.to_owned(),
                "two words".to_owned(),
                "back slash".to_owned()
            ])
        );
        assert_eq!(
            split_command("  "),
            Err("--cmd needs a program to run".into())
        );
        assert_eq!(
            split_command("echo 'open"),
            Err(r#"--cmd: unbalanced quotes or a trailing backslash in "echo 'open""#.into())
        );
    }

    #[test]
    fn exit_statuses() {
        assert_eq!(or_usage("x", "usage", Ok(Some(7))), Ok(7));
        assert_eq!(
            or_usage::<u8>("x", "usage", Ok(None)),
            Err(ExitCode::SUCCESS)
        );
        assert_eq!(
            or_usage::<u8>("x", "usage", Err("bad".into())),
            Err(ExitCode::from(2))
        );
        assert_eq!(exit_status("x", Ok(())), ExitCode::SUCCESS);
        assert_eq!(exit_status("x", Err("failed".into())), ExitCode::FAILURE);
    }
}
