//! Agents' softphones register to baton (RFC 3261 §10) with digest authentication: baresip
//! as a real softphone signs in and shows as registered; SIPp with a wrong password is
//! refused with 403 and never registered; a right one registers and un-registers. Both
//! peers know only MD5 and give up at a SHA-256 challenge, so their agents are offered MD5
//! alone (`digest = ["MD5"]`); SHA-256 is covered by the registrar's own tests.

mod common;

use common::softphone::{Softphone, AGENTS};
use common::{wait_for, Baton, Sipp, Transport};
use serde_json::Value;
use std::time::Duration;

fn agent(baton: &Baton, id: &str) -> Value {
    let agents = baton.get_json("/v1/agents");
    agents
        .as_array()
        .and_then(|list| list.iter().find(|a| a["id"] == id))
        .cloned()
        .unwrap_or_else(|| panic!("agent {id} in {agents:#}"))
}

fn register(baton: &Baton, user: &str, password: &str, expires: u32, outcome: u16) -> bool {
    Sipp::new(baton, "register.xml", Transport::Udp)
        .var("USER", user)
        .var("PASSWORD", password)
        .var("EXPIRES", expires)
        .var("OUTCOME", outcome)
        .timeout(Duration::from_secs(10))
        .run()
        .ok()
}

#[test]
fn softphones_register_with_digest_and_a_wrong_password_is_refused() {
    let mut baton = Baton::builder("agents-register").config(AGENTS).start();
    let before = agent(&baton, "a-fraud");
    assert_eq!(before["registered"], false);
    assert_eq!(before["skills"]["fraud"], 4);
    assert_eq!(before["presence"], "available");

    let phone = Softphone::start(&baton, "dana", "correct-horse-battery");
    let registered = wait_for(Duration::from_secs(10), || {
        agent(&baton, "a-fraud")["registered"] == true
    });
    assert!(
        registered,
        "baresip registered: {:#}\n{}",
        agent(&baton, "a-fraud"),
        phone.log()
    );
    let dana = agent(&baton, "a-fraud");
    let contact = dana["contacts"][0].as_str().unwrap_or_default().to_owned();
    assert!(
        contact.contains(&format!("127.0.0.1:{}", phone.sip_port)),
        "the binding is where baresip listens: {dana:#}"
    );

    assert!(
        register(&baton, "sam", "not the password", 600, 403),
        "a wrong password is refused with 403"
    );
    assert_eq!(agent(&baton, "a-billing")["registered"], false);

    assert!(register(&baton, "sam", "battery-staple-42", 600, 200));
    assert_eq!(agent(&baton, "a-billing")["registered"], true);
    assert!(
        register(&baton, "sam", "battery-staple-42", 0, 200),
        "Expires: 0 removes the binding"
    );
    assert_eq!(agent(&baton, "a-billing")["registered"], false);
    assert_eq!(
        agent(&baton, "a-fraud")["registered"],
        true,
        "other agents are untouched"
    );
    baton.assert_alive();
}

#[test]
fn presence_is_set_by_the_agent_or_an_operator_only() {
    let config = format!(
        "{AGENTS}\
         [[api_token]]\ntoken = \"operator-token-0123456789\"\nrole = \"admin\"\n\
         [[api_token]]\ntoken = \"dana-token-0123456789ab\"\nrole = \"agent\"\nagent = \"a-fraud\"\n"
    );
    let mut baton = Baton::builder("agents-presence")
        .config(&config)
        .token("operator-token-0123456789")
        .start();
    let put = |token: &str, id: &str, body: &str| {
        common::http_request(
            baton.http,
            "PUT",
            &format!("/v1/agents/{id}/presence"),
            &[&format!("Authorization: Bearer {token}")],
            body,
        )
        .expect("HTTP")
        .0
    };
    let (dana, operator) = ("dana-token-0123456789ab", "operator-token-0123456789");
    for (token, id, presence, status, why) in [
        (
            dana,
            "a-fraud",
            "away",
            204,
            "an agent sets their own presence",
        ),
        (
            dana,
            "a-billing",
            "away",
            403,
            "an agent sets only their own presence",
        ),
        (
            operator,
            "a-billing",
            "busy",
            204,
            "an operator sets anyone's",
        ),
        (
            operator,
            "a-billing",
            "asleep",
            400,
            "presences are a fixed list",
        ),
        (operator, "nobody", "away", 404, "no such agent"),
    ] {
        let body = format!(r#"{{"presence": "{presence}"}}"#);
        assert_eq!(put(token, id, &body), status, "{why}");
    }
    assert_eq!(agent(&baton, "a-fraud")["presence"], "away");
    assert_eq!(agent(&baton, "a-billing")["presence"], "busy");
    baton.assert_alive();
}
