//! Stopping baton the way an init system or orchestrator does (SIGTERM) while a carrier's
//! call is up: the health check turns 503 at once so the load balancer sends no more
//! calls, new INVITEs are refused 503, the call in progress goes on until the caller hangs
//! up, and baton then exits by itself with status 0. A call that outlasts
//! `shutdown_grace_secs` is hung up by baton (BYE) before it exits.

mod common;

use common::{caller_audio, http_get, wait_for, Baton, SipCaller, Sipp, Transport};
use std::thread;
use std::time::{Duration, Instant};

/// How long baton may take to exit once its last call is gone.
const EXIT_WAIT: Duration = Duration::from_secs(5);

fn call_in_progress_finishes_after_sigterm(transport: Transport) {
    let mut baton = Baton::start(&format!("drain-{}", transport.name()));
    let audio = caller_audio(
        &baton.dir,
        "caller",
        "I just need one more minute to finish this.",
        0.0,
    );
    let sipp = Sipp::new(&baton, "uac_audio.xml", transport)
        .user("echo")
        .var("AUDIO", audio.path.display())
        .var("MILLIS", 6000)
        .timeout(Duration::from_secs(30))
        .spawn();
    baton.wait_state(&sipp.call_id, "active", Duration::from_secs(10));

    baton.terminate();
    let mut health = None;
    let draining = wait_for(Duration::from_secs(3), || {
        health = Some(http_get(baton.http, "/healthz"));
        matches!(health, Some(Ok((503, _))))
    });
    assert!(
        draining,
        "/healthz should answer 503 while calls drain, got {health:?}"
    );

    let newcomer = SipCaller::bind("127.0.0.1", &baton);
    let (refusal, _, _) = newcomer
        .invite("echo", 40_000, Duration::from_secs(10))
        .expect("a new INVITE during shutdown gets a final response");
    assert_eq!(
        refusal.status(),
        Some(503),
        "a new call during shutdown: {refusal:?}"
    );
    assert!(
        refusal.header("Retry-After").is_some(),
        "the 503 tells the carrier when to retry: {refusal:?}"
    );
    let call = baton
        .call(&sipp.call_id)
        .expect("the call in progress is listed");
    assert_eq!(
        call["state"], "active",
        "the call in progress goes on: {call}"
    );

    let run = sipp.wait();
    run.assert_ok();
    let hung_up = Instant::now();
    let status = baton
        .wait_exit(EXIT_WAIT)
        .unwrap_or_else(|| panic!("baton still running {EXIT_WAIT:?} after its last call ended"));
    assert!(status.success(), "baton exited with {status}");
    assert!(
        hung_up.elapsed() <= EXIT_WAIT,
        "exit took {:?}",
        hung_up.elapsed()
    );
    assert!(
        http_get(baton.http, "/healthz").is_err(),
        "nothing listens on the API once baton is gone"
    );
}

#[test]
fn call_in_progress_finishes_after_sigterm_udp() {
    call_in_progress_finishes_after_sigterm(Transport::Udp);
}

#[test]
fn call_in_progress_finishes_after_sigterm_tcp() {
    call_in_progress_finishes_after_sigterm(Transport::Tcp);
}

fn call_outlasting_the_grace_period_is_hung_up(transport: Transport) {
    let mut baton = Baton::builder(&format!("grace-{}", transport.name()))
        .config("shutdown_grace_secs = 2\n")
        .start();
    let audio = caller_audio(&baton.dir, "caller", "Hello, I will stay on the line.", 0.0);
    // The echo plan never ends by itself and this caller waits for baton's BYE.
    let sipp = Sipp::new(&baton, "uac_wait_bye.xml", transport)
        .user("echo")
        .var("AUDIO", audio.path.display())
        .timeout(Duration::from_secs(30))
        .spawn();
    baton.wait_state(&sipp.call_id, "active", Duration::from_secs(10));

    let terminated = Instant::now();
    baton.terminate();
    thread::sleep(Duration::from_secs(1));
    let call = baton
        .call(&sipp.call_id)
        .expect("the call is listed during the grace period");
    assert_eq!(call["state"], "active", "within the grace period: {call}");

    let run = sipp.wait();
    run.assert_ok();
    let bye_after = terminated.elapsed();
    assert!(
        (Duration::from_millis(1500)..Duration::from_secs(8)).contains(&bye_after),
        "baton's BYE should come when the 2 s grace period is over, came after {bye_after:?}"
    );
    let status = baton
        .wait_exit(EXIT_WAIT)
        .unwrap_or_else(|| panic!("baton still running {EXIT_WAIT:?} after hanging up"));
    assert!(status.success(), "baton exited with {status}");
}

#[test]
fn call_outlasting_the_grace_period_is_hung_up_udp() {
    call_outlasting_the_grace_period_is_hung_up(Transport::Udp);
}

#[test]
fn call_outlasting_the_grace_period_is_hung_up_tcp() {
    call_outlasting_the_grace_period_is_hung_up(Transport::Tcp);
}
