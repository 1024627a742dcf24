//! The `baton` command as an operator meets it: `baton check` on good and broken
//! dialplans, `baton serve` refusing a bad config file or a missing dialplan directory
//! at once with the place of the problem, and the help text naming every flag.

mod common;

use common::{repo_path, temp_dir};
use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// What one run of the `baton` binary did.
struct Outcome {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    took: Duration,
}

impl Outcome {
    /// Both streams, for assertion messages.
    fn text(&self) -> String {
        format!(
            "exit {} after {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.took, self.stdout, self.stderr
        )
    }
}

/// Runs `baton ARGS` in `dir` with the installed speech model; a run that outlasts
/// `limit` is killed and fails the test.
fn baton(dir: &Path, args: &[&str], limit: Duration) -> Outcome {
    run_baton(dir, args, limit, Some(&common::model_path()))
}

/// [`baton`] with `BATON_WHISPER_MODEL` set to `model`, or unset so that the config
/// file's `speech_model` decides.
fn run_baton(dir: &Path, args: &[&str], limit: Duration, model: Option<&Path>) -> Outcome {
    let started = Instant::now();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_baton"));
    cmd.args(args).current_dir(dir).env("BATON_LOG", "info");
    match model {
        Some(path) => cmd.env("BATON_WHISPER_MODEL", path),
        None => cmd.env_remove("BATON_WHISPER_MODEL"),
    };
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", env!("CARGO_BIN_EXE_baton")));
    // Read both pipes while waiting, so a chatty process never blocks on a full pipe.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_string(&mut text);
            }
            text
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for baton") {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = err.join().unwrap_or_default();
            panic!("baton {args:?} still running after {limit:?}; stderr:\n{stderr}");
        }
        thread::sleep(Duration::from_millis(20));
    };
    Outcome {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        took: started.elapsed(),
    }
}

/// How long a command that only reads files may take.
const QUICK: Duration = Duration::from_secs(10);

#[test]
fn check_accepts_the_shipped_dialplans() {
    let run = baton(
        &repo_path(""),
        &["check", "dialplans", "--media", "media"],
        QUICK,
    );
    assert!(run.status.success(), "{}", run.text());
    for (file, name) in [
        ("bank.toml", "bank"),
        ("echo.toml", "echo"),
        ("record.toml", "record"),
    ] {
        assert!(
            run.stdout
                .lines()
                .any(|l| l.starts_with(&format!("dialplans/{file}: \"{name}\" answers "))),
            "{file} is listed with what it answers:\n{}",
            run.text()
        );
    }
    assert!(
        run.stdout.trim_end().ends_with("3 dialplans OK"),
        "{}",
        run.text()
    );
}

/// The `file:LINE:COLUMN: ` prefix of the error line about `file`, and the rest of it.
fn error_about<'a>(stderr: &'a str, file: &Path, what: &str) -> (u32, u32, &'a str) {
    let prefix = format!("{}:", file.display());
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter(|rest| rest.contains(what))
        .find_map(|rest| {
            let mut parts = rest.splitn(3, ':');
            let line = parts.next()?.parse().ok()?;
            let column = parts.next()?.parse().ok()?;
            Some((line, column, parts.next()?))
        })
        .unwrap_or_else(|| {
            panic!(
                "no error of the form {}:LINE:COLUMN: ... {what} in:\n{stderr}",
                file.display()
            )
        })
}

#[test]
fn check_reports_every_error_with_its_place() {
    let dir = temp_dir("cli-check");
    let plans = dir.join("dialplans");
    fs::create_dir_all(&plans).expect("create dialplans dir");
    let unknown_and_missing = plans.join("a-steps.toml");
    fs::write(
        &unknown_and_missing,
        "name = \"steps\"\n\
         match = [\"shared\", \"steps\"]\n\
         \n\
         [[step]]\n\
         dance = 3\n\
         \n\
         [[step]]\n\
         play = \"no-such-prompt.wav\"\n",
    )
    .expect("write dialplan");
    let duplicate = plans.join("b-duplicate.toml");
    fs::write(
        &duplicate,
        "name = \"duplicate\"\n\
         match = [\"shared\"]\n\
         \n\
         [[step]]\n\
         pause = 1\n",
    )
    .expect("write dialplan");
    let syntax = plans.join("c-syntax.toml");
    fs::write(
        &syntax,
        "name = \"syntax\"\n\
         match = [\"syntax\"\n\
         [[step]]\n\
         pause = 1\n",
    )
    .expect("write dialplan");
    let media = repo_path("media");
    let run = baton(
        &dir,
        &[
            "check",
            plans.to_str().expect("UTF-8 temp path"),
            "--media",
            media.to_str().expect("UTF-8 media path"),
        ],
        QUICK,
    );
    assert!(
        !run.status.success(),
        "broken dialplans pass:\n{}",
        run.text()
    );

    let (line, column, rest) = error_about(&run.stderr, &unknown_and_missing, "\"dance\"");
    assert_eq!((line, column), (5, 1), "the unknown step: {rest}");
    assert!(rest.contains("step 1"), "names the step: {rest}");

    let (line, column, rest) =
        error_about(&run.stderr, &unknown_and_missing, "\"no-such-prompt.wav\"");
    assert_eq!((line, column), (8, 1), "the missing media file: {rest}");
    assert!(
        rest.contains("step 2") && rest.contains("\"play\""),
        "names the step and its key: {rest}"
    );

    let (line, column, rest) = error_about(&run.stderr, &duplicate, "\"shared\"");
    assert_eq!(
        (line, column),
        (2, 10),
        "the duplicate match entry itself: {rest}"
    );
    assert!(
        rest.contains("match") && rest.contains(&format!("{}:2", unknown_and_missing.display())),
        "names the key and the file that claimed the entry first: {rest}"
    );

    let (line, _, rest) = error_about(&run.stderr, &syntax, "");
    assert!(
        (2..=3).contains(&line),
        "the unclosed array is reported where it ends: line {line}: {rest}"
    );

    assert!(
        run.stderr.lines().any(|l| l.trim() == "4 error(s)"),
        "every error is counted:\n{}",
        run.text()
    );
    fs::remove_dir_all(&dir).ok();
}

/// Runs `baton serve` with `config` as its file; it must refuse it at once.
fn serve_refuses(name: &str, config: &str) -> (std::path::PathBuf, Outcome) {
    let dir = temp_dir(name);
    let path = dir.join("baton.toml");
    fs::write(&path, config).expect("write config");
    let run = baton(
        &dir,
        &["serve", "--config", path.to_str().expect("UTF-8 temp path")],
        QUICK,
    );
    assert!(
        !run.status.success(),
        "baton serve took a bad config:\n{}",
        run.text()
    );
    assert!(
        run.took < Duration::from_secs(5),
        "refusing a config took {:?}",
        run.took
    );
    (path, run)
}

#[test]
fn serve_refuses_an_unknown_config_key() {
    let (path, run) = serve_refuses(
        "cli-unknown-key",
        "sip = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\nrtp_port = \"20000-20100\"\n",
    );
    let place = format!("{}:3:1: key \"rtp_port\"", path.display());
    assert!(
        run.stderr.contains(&place),
        "expected {place}:\n{}",
        run.text()
    );
    fs::remove_dir_all(path.parent().expect("config dir")).ok();
}

#[test]
fn serve_refuses_a_reversed_rtp_port_range() {
    let (path, run) = serve_refuses(
        "cli-reversed-range",
        "sip = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\n\n# backwards\nrtp_ports = \"30000-20000\"\n",
    );
    let place = format!("{}:5:1: key \"rtp_ports\"", path.display());
    assert!(
        run.stderr.contains(&place),
        "expected {place}:\n{}",
        run.text()
    );
    assert!(
        run.stderr.contains("30000-20000"),
        "quotes the value:\n{}",
        run.text()
    );
    fs::remove_dir_all(path.parent().expect("config dir")).ok();
}

#[test]
fn serve_refuses_a_value_of_the_wrong_type_in_a_table() {
    let (path, run) = serve_refuses(
        "cli-wrong-type",
        "sip = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\n\n[invite_rate_limit]\nburst = \"many\"\n",
    );
    let place = format!("{}:5:9: key \"invite_rate_limit.burst\"", path.display());
    assert!(
        run.stderr.contains(&place),
        "expected {place}:\n{}",
        run.text()
    );
    fs::remove_dir_all(path.parent().expect("config dir")).ok();
}

#[test]
fn serve_refuses_a_missing_dialplan_directory() {
    let dir = temp_dir("cli-no-dialplans");
    let missing = dir.join("no-such-dialplans");
    let data = dir.join("data");
    let media = repo_path("media");
    let run = baton(
        &dir,
        &[
            "serve",
            "--sip",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--dialplans",
            missing.to_str().expect("UTF-8 temp path"),
            "--media",
            media.to_str().expect("UTF-8 media path"),
            "--data",
            data.to_str().expect("UTF-8 temp path"),
        ],
        QUICK,
    );
    assert!(
        !run.status.success(),
        "baton serve ran without dialplans:\n{}",
        run.text()
    );
    assert!(
        run.took < Duration::from_secs(5),
        "refusing took {:?}",
        run.took
    );
    assert!(
        run.stderr.contains(&missing.display().to_string()),
        "names the missing directory:\n{}",
        run.text()
    );
    fs::remove_dir_all(&dir).ok();
}

/// `baton serve` with the shipped dialplans and `model` as its speech model.
fn serve_with_model(name: &str, model: &Path) -> (std::path::PathBuf, Outcome) {
    let dir = temp_dir(name);
    let config = dir.join("baton.toml");
    let text = format!(
        "sip = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\ndialplans = {:?}\nmedia = {:?}\ndata = {:?}\nspeech_model = {:?}\n",
        repo_path("dialplans"),
        repo_path("media"),
        dir.join("data"),
        model
    );
    fs::write(&config, text).expect("write config");
    let config = config.to_str().expect("UTF-8 temp path");
    let run = run_baton(&dir, &["serve", "--config", config], QUICK, None);
    assert!(
        !run.status.success(),
        "baton served without a usable model:\n{}",
        run.text()
    );
    (dir, run)
}

#[test]
fn serve_refuses_a_missing_speech_model_naming_it() {
    let missing = temp_dir("cli-no-model-path").join("ggml-missing.bin");
    let (dir, run) = serve_with_model("cli-no-model", &missing);
    assert!(
        run.stderr.contains(&missing.display().to_string()),
        "names the missing model:\n{}",
        run.text()
    );
    fs::remove_dir_all(&dir).ok();
}

#[test]
fn serve_refuses_a_damaged_speech_model_naming_it() {
    let dir = temp_dir("cli-bad-model-file");
    let damaged = dir.join("ggml-damaged.bin");
    let whole = fs::read(common::model_path()).expect("the installed model (make model)");
    fs::write(&damaged, &whole[..1_000_000]).expect("write damaged model");
    let (run_dir, run) = serve_with_model("cli-bad-model", &damaged);
    assert!(
        run.stderr.contains(&damaged.display().to_string()) && run.stderr.contains("cut short"),
        "names the damaged model and what is wrong:\n{}",
        run.text()
    );
    fs::remove_dir_all(&dir).ok();
    fs::remove_dir_all(&run_dir).ok();
}

#[test]
fn help_names_every_command_and_flag() {
    let here = repo_path("");
    let top = baton(&here, &["--help"], QUICK);
    assert!(top.status.success(), "{}", top.text());
    for command in ["serve", "check"] {
        assert!(
            top.stdout
                .lines()
                .any(|l| l.trim_start().starts_with(command)),
            "baton --help lists {command}:\n{}",
            top.text()
        );
    }

    let serve = baton(&here, &["serve", "--help"], QUICK);
    assert!(serve.status.success(), "{}", serve.text());
    for flag in [
        "--sip",
        "--http",
        "--rtp-ports",
        "--dialplans",
        "--media",
        "--data",
        "--config",
    ] {
        assert!(
            serve
                .stdout
                .lines()
                .any(|l| l.trim_start().starts_with(flag) && l.len() > flag.len() + 10),
            "baton serve --help explains {flag}:\n{}",
            serve.text()
        );
    }

    let check = baton(&here, &["check", "--help"], QUICK);
    assert!(check.status.success(), "{}", check.text());
    assert!(check.stdout.contains("--media"), "{}", check.text());

    let version = baton(&here, &["--version"], QUICK);
    assert!(version.status.success(), "{}", version.text());
    assert!(version.stdout.starts_with("baton "), "{}", version.text());
}
