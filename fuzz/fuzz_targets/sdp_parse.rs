//! Untrusted SDP through the whole offer/answer path: parse, answer, write, re-read,
//! and accept it as an answer to our own offer. Only a panic or a broken invariant fails.

#![no_main]

use baton_sdp::{accept_answer, answer, offer, LocalMedia, RemoteDescription, SdpSession};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(remote) = RemoteDescription::parse(data) else {
        return;
    };
    let local = LocalMedia::new([192, 0, 2, 7].into(), 40000);
    let _ = accept_answer(&offer(&local), &remote);
    let Ok(ours) = answer(&remote, &local) else {
        return;
    };
    // What we write must be readable again and keep the m-line count (RFC 3264 §6).
    let body = SdpSession::new(1).write(&ours.description);
    let reread = RemoteDescription::parse(&body).expect("our own answer parses");
    assert_eq!(reread.media.len(), remote.media.len());
    assert!(reread.audio.is_some(), "our answer keeps the audio stream");
});
