//! Session timers as UAS (RFC 4028 §9, §10): choose the interval and the refresher for
//! the 2xx to an INVITE or UPDATE, and know when a session nobody refreshed must end.

use std::time::{Duration, Instant};

use crate::message::{Header, Refresher, Request, Response, SessionExpires};

/// The smallest Session-Expires RFC 4028 allows (§4).
const ABSOLUTE_MIN_SE: u32 = 90;

/// baton's session timer preferences.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTimerConfig {
    /// Offer a session timer even when the request asked for none.
    pub enabled: bool,
    /// Preferred interval in seconds (RFC 4028 recommends 1800).
    pub session_expires: u32,
    /// Smallest interval accepted; shorter requests get 422 (at least 90).
    pub min_se: u32,
}

impl Default for SessionTimerConfig {
    fn default() -> Self {
        SessionTimerConfig {
            enabled: true,
            session_expires: 1800,
            min_se: ABSOLUTE_MIN_SE,
        }
    }
}

/// The outcome of negotiation: what the 2xx carries and who refreshes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTimer {
    /// Session interval in seconds.
    pub interval: u32,
    pub refresher: Refresher,
    /// The UAC supports timers, so the 2xx carries `Require: timer`.
    pub require_timer: bool,
}

/// A request baton cannot accept as is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionTimerError {
    #[error("Session-Expires {requested}s is below the minimum {min_se}s")]
    IntervalTooSmall { requested: u32, min_se: u32 },
}

impl SessionTimerError {
    /// The status to answer with: 422 Session Interval Too Small.
    pub fn status(&self) -> u16 {
        422
    }

    /// The 422 response to `req`, with the Min-SE the UAC must retry with (§6).
    pub fn response(&self, req: &Request) -> Response {
        let SessionTimerError::IntervalTooSmall { min_se, .. } = *self;
        let mut resp = req.response(self.status(), None);
        resp.headers.push(Header::MinSe(min_se));
        resp
    }
}

/// Negotiates the session timer for an INVITE or UPDATE baton answers with a 2xx (RFC 4028
/// §9): honours the UAC's interval (lowering it to our preference, never below either
/// Min-SE) and its refresher choice; without one, the UAC refreshes if it supports timers,
/// baton otherwise. `Ok(None)`: no session timer (none asked, none configured).
pub fn negotiate_session_timer(
    req: &Request,
    config: &SessionTimerConfig,
) -> Result<Option<SessionTimer>, SessionTimerError> {
    let uac_supports = req
        .headers
        .supported()
        .chain(req.headers.require())
        .any(|t| t.eq_ignore_ascii_case("timer"));
    let our_min = config.min_se.max(ABSOLUTE_MIN_SE);
    let floor = req.headers.min_se().unwrap_or(ABSOLUTE_MIN_SE).max(our_min);
    let (interval, asked_refresher) = match req.headers.session_expires() {
        Some(se) => {
            if se.seconds < our_min {
                return Err(SessionTimerError::IntervalTooSmall {
                    requested: se.seconds,
                    min_se: floor,
                });
            }
            // §9: the UAS may shorten the interval but not below the Min-SE in force.
            let interval = config.session_expires.max(floor).min(se.seconds);
            (interval, se.refresher)
        }
        None if config.enabled => (config.session_expires.max(floor), None),
        None => return Ok(None),
    };
    let refresher = match asked_refresher {
        // A UAC without timer support would never refresh: baton must.
        _ if !uac_supports => Refresher::Uas,
        Some(r) => r,
        None => Refresher::Uac,
    };
    Ok(Some(SessionTimer {
        interval,
        refresher,
        require_timer: uac_supports,
    }))
}

impl SessionTimer {
    /// The headers the 2xx carries: Session-Expires with the refresher, and
    /// `Require: timer` when the UAC supports it (§9).
    pub fn headers(&self) -> Vec<Header> {
        let mut headers = vec![Header::SessionExpires(SessionExpires {
            seconds: self.interval,
            refresher: Some(self.refresher),
            params: Vec::new(),
        })];
        if self.require_timer {
            headers.push(Header::Require(vec!["timer".to_string()]));
        }
        headers
    }

    /// Adds [`SessionTimer::headers`] to a 2xx.
    pub fn apply(&self, resp: &mut Response) {
        for h in self.headers() {
            resp.headers.push(h);
        }
    }

    /// When to send BYE if no refresh arrived since `refreshed_at` (§10: interval minus
    /// the lesser of 32 s and a third of the interval).
    pub fn expires_at(&self, refreshed_at: Instant) -> Instant {
        let margin = 32.min(self.interval / 3);
        refreshed_at + Duration::from_secs(u64::from(self.interval - margin))
    }

    /// The timer after a refresh baton sent as the session's refresher (RFC 4028 §7.2):
    /// the 2xx's Session-Expires sets the interval and who refreshes next. It names the
    /// refresher from the refresh request's point of view (`uac` is baton), while this
    /// timer names it from the dialog's (baton is its UAS). A 2xx without Session-Expires
    /// ends session timing for the dialog.
    pub fn after_our_refresh(&self, ok: &Response) -> Option<SessionTimer> {
        let se = ok.headers.session_expires()?;
        let refresher = match se.refresher {
            Some(Refresher::Uas) => Refresher::Uac,
            _ => Refresher::Uas,
        };
        Some(SessionTimer {
            interval: se.seconds.max(ABSOLUTE_MIN_SE),
            refresher,
            require_timer: self.require_timer,
        })
    }

    /// The Session-Expires of a refresh baton sends: the current interval, baton (the
    /// refresh's UAC) refreshing again.
    pub fn refresh_header(&self) -> Header {
        Header::SessionExpires(SessionExpires {
            seconds: self.interval,
            refresher: Some(Refresher::Uac),
            params: Vec::new(),
        })
    }

    /// When baton must send the refresh itself (half the interval, §7.4), if it is the
    /// refresher.
    pub fn refresh_at(&self, refreshed_at: Instant) -> Option<Instant> {
        (self.refresher == Refresher::Uas)
            .then(|| refreshed_at + Duration::from_secs(u64::from(self.interval / 2)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixtures::request;
    use crate::message::Method;

    fn invite(headers: Vec<Header>) -> Request {
        let mut req = request(Method::Invite, "z9hG4bKi", 1);
        for h in headers {
            req.headers.push(h);
        }
        req
    }

    fn se(seconds: u32, refresher: Option<Refresher>) -> Header {
        Header::SessionExpires(SessionExpires {
            seconds,
            refresher,
            params: Vec::new(),
        })
    }

    fn supported() -> Header {
        Header::Supported(vec!["100rel".into(), "timer".into()])
    }

    fn cfg() -> SessionTimerConfig {
        SessionTimerConfig::default()
    }

    #[test]
    fn honours_uac_refresher_and_interval() {
        let req = invite(vec![supported(), se(600, Some(Refresher::Uas))]);
        let st = negotiate_session_timer(&req, &cfg())
            .expect("acceptable")
            .expect("timer");
        assert_eq!(
            st,
            SessionTimer {
                interval: 600,
                refresher: Refresher::Uas,
                require_timer: true
            }
        );
        let mut resp = req.response(200, None);
        st.apply(&mut resp);
        assert_eq!(
            resp.headers
                .session_expires()
                .map(|s| (s.seconds, s.refresher)),
            Some((600, Some(Refresher::Uas)))
        );
        assert_eq!(resp.headers.require().collect::<Vec<_>>(), vec!["timer"]);
    }

    #[test]
    fn refresher_defaults_to_uac_when_supported_and_uas_otherwise() {
        let with = negotiate_session_timer(&invite(vec![supported(), se(1800, None)]), &cfg());
        assert_eq!(
            with.map(|s| s.map(|s| s.refresher)),
            Ok(Some(Refresher::Uac))
        );

        let without =
            negotiate_session_timer(&invite(vec![se(1800, Some(Refresher::Uac))]), &cfg())
                .expect("acceptable")
                .expect("timer");
        assert_eq!(
            without.refresher,
            Refresher::Uas,
            "a UAC without timer support cannot refresh"
        );
        assert!(!without.require_timer);
        assert!(without
            .headers()
            .iter()
            .all(|h| !matches!(h, Header::Require(_))));
    }

    #[test]
    fn too_small_interval_gets_422_with_min_se() {
        let config = SessionTimerConfig {
            min_se: 300,
            ..cfg()
        };
        let req = invite(vec![supported(), se(120, None)]);
        let err = negotiate_session_timer(&req, &config).expect_err("below Min-SE");
        assert_eq!(
            err,
            SessionTimerError::IntervalTooSmall {
                requested: 120,
                min_se: 300
            }
        );
        let resp = err.response(&req);
        assert_eq!(resp.status, 422);
        assert_eq!(resp.reason, "Session Interval Too Small");
        assert_eq!(resp.headers.min_se(), Some(300));
        // RFC 4028 itself forbids less than 90 s.
        let tiny = invite(vec![supported(), se(60, None)]);
        assert!(negotiate_session_timer(&tiny, &cfg()).is_err());
    }

    #[test]
    fn lowers_to_our_preference_but_not_below_their_min_se() {
        let config = SessionTimerConfig {
            session_expires: 600,
            ..cfg()
        };
        let req = invite(vec![supported(), se(3600, None)]);
        assert_eq!(
            negotiate_session_timer(&req, &config).map(|s| s.map(|s| s.interval)),
            Ok(Some(600))
        );
        let req = invite(vec![supported(), se(3600, None), Header::MinSe(1200)]);
        assert_eq!(
            negotiate_session_timer(&req, &config).map(|s| s.map(|s| s.interval)),
            Ok(Some(1200))
        );
    }

    #[test]
    fn without_session_expires_offers_ours_when_enabled() {
        let st = negotiate_session_timer(&invite(vec![supported()]), &cfg())
            .expect("ok")
            .expect("timer");
        assert_eq!((st.interval, st.refresher), (1800, Refresher::Uac));
        let off = SessionTimerConfig {
            enabled: false,
            ..cfg()
        };
        assert_eq!(
            negotiate_session_timer(&invite(vec![supported()]), &off),
            Ok(None)
        );
        // Asked for explicitly, it is negotiated even when not offered by default.
        assert!(matches!(
            negotiate_session_timer(&invite(vec![supported(), se(900, None)]), &off),
            Ok(Some(_))
        ));
    }

    #[test]
    fn expiry_leaves_the_margin_before_the_interval() {
        let t0 = Instant::now();
        let long = SessionTimer {
            interval: 1800,
            refresher: Refresher::Uac,
            require_timer: true,
        };
        assert_eq!(long.expires_at(t0), t0 + Duration::from_secs(1768));
        assert_eq!(long.refresh_at(t0), None);
        let short = SessionTimer {
            interval: 90,
            refresher: Refresher::Uas,
            require_timer: false,
        };
        assert_eq!(short.expires_at(t0), t0 + Duration::from_secs(60));
        assert_eq!(short.refresh_at(t0), Some(t0 + Duration::from_secs(45)));
    }

    #[test]
    fn the_answer_to_our_refresh_says_who_refreshes_next() {
        let ours = SessionTimer {
            interval: 1800,
            refresher: Refresher::Uas,
            require_timer: true,
        };
        let req = invite(vec![ours.refresh_header()]);
        assert_eq!(
            req.headers.session_expires().unwrap().refresher,
            Some(Refresher::Uac),
            "baton sends the refresh and keeps refreshing"
        );
        let answer = |headers: Vec<Header>| {
            let mut ok = req.response(200, None);
            for h in headers {
                ok.headers.push(h);
            }
            ours.after_our_refresh(&ok)
        };
        let again = answer(vec![se(900, Some(Refresher::Uac))]).unwrap();
        assert_eq!((again.interval, again.refresher), (900, Refresher::Uas));
        assert!(
            again.refresh_at(Instant::now()).is_some(),
            "still baton's turn"
        );
        let theirs = answer(vec![se(1800, Some(Refresher::Uas))]).unwrap();
        assert_eq!(theirs.refresher, Refresher::Uac, "the caller takes over");
        assert_eq!(theirs.refresh_at(Instant::now()), None);
        assert_eq!(
            answer(vec![]),
            None,
            "no Session-Expires: no more session timing"
        );
    }
}
