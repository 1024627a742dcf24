//! baton's SIP user agent core: one task that owns the transaction layer and every dialog,
//! answers what needs no call (OPTIONS, errors), creates calls from INVITEs, and relays
//! in-dialog events to the call tasks that own the media.
//!
//! Every wire error maps to its status code here, in one place ([`Reject`]).

use crate::agents::{Colleague, Refusal};
use crate::call::{self, AgentEvent, CallEvent, CallSetup, Command, Dial};
use crate::calls::{CallInfo, CallState, MediaStats};
use crate::metrics::Direction as MetricDir;
use crate::ratelimit::RateLimiter;
use crate::server::Shared;
use crate::transport::{Inbound, Transports};
use baton_sdp::{
    LocalDescription, LocalMedia, Negotiated, NegotiationError, RemoteDescription, SdpSession,
};
use baton_sip::build::{new_call_id, new_tag};
use baton_sip::dialog::{
    negotiate_session_timer, Dialog, Replaces, SessionTimer, SessionTimerConfig, SessionTimerError,
    Uas2xxEvent, Uas2xxRetransmit,
};
use baton_sip::transaction::{Peer, TransactionLayer, Transmit, Transport, TxEvent, TxId};
use baton_sip::{
    parse, CSeq, Contact, Header, Headers, Message, Method, NameAddr, Param, Request, Response,
    SipUri, Uri, Via,
};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc;
use tracing::{debug, info, info_span, warn};

/// Methods baton implements, for Allow headers.
const ALLOW: [Method; 9] = [
    Method::Invite,
    Method::Ack,
    Method::Bye,
    Method::Cancel,
    Method::Options,
    Method::Register,
    Method::Update,
    Method::Info,
    Method::Refer,
];
/// Option tags baton supports (Supported, and accepted in Require).
const SUPPORTED: [&str; 1] = ["timer"];
/// Events queued towards one call before the endpoint drops them.
const CALL_QUEUE: usize = 64;
/// Longest wait before retrying a refresh the caller answered 491 (RFC 3261 §14.1: the
/// side that did not choose the Call-ID waits 0–2 s).
const GLARE_RETRY_MS: u64 = 2_000;

/// What one of our client transactions is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    Bye,
    /// A session refresh (RFC 4028 §7.4), by UPDATE or re-INVITE.
    Refresh,
    /// The INVITE of an agent leg.
    Invite,
    /// The CANCEL of an agent leg's INVITE.
    Cancel,
    /// A NOTIFY of how a transfer an agent asked for goes (RFC 3515).
    Notify,
}

/// An agent leg whose INVITE has no final answer yet.
struct Dialing {
    invite: Request,
    peer: Peer,
    call: mpsc::Sender<CallEvent>,
    media: LocalMedia,
    sdp: SdpSession,
    local: LocalDescription,
    /// A provisional response came: a CANCEL may be sent (RFC 3261 §9.1).
    provisional: bool,
    /// The call gave up on the leg before a provisional response: CANCEL on the first.
    cancel: bool,
}

/// A request baton answers with an error status instead of processing it.
struct Reject {
    status: u16,
    /// Text for a `Warning: 399` header, naming what was wrong.
    warning: Option<String>,
    extra: Vec<Header>,
}

impl Reject {
    fn new(status: u16) -> Reject {
        Reject {
            status,
            warning: None,
            extra: Vec::new(),
        }
    }

    fn warn(status: u16, text: impl Into<String>) -> Reject {
        Reject {
            warning: Some(text.into()),
            ..Reject::new(status)
        }
    }

    /// 488 with the offer/answer failure's own Warning code (RFC 3261 §20.43).
    fn unacceptable(e: &NegotiationError) -> Reject {
        Reject::new(488).with(other(
            "Warning",
            &format!("{} baton \"{}\"", e.warning_code(), e),
        ))
    }

    /// 400 for a body that is not valid SDP.
    fn bad_sdp(e: baton_sdp::ParseError) -> Reject {
        Reject::warn(400, format!("SDP: {e}"))
    }

    fn with(mut self, h: Header) -> Reject {
        self.extra.push(h);
        self
    }
}

/// The endpoint's view of one call's dialog. Keyed by our To tag, which is unique.
/// Call-ID, From tag and CSeq number of an initial INVITE.
type Origin = (String, String, u32);

struct Leg {
    call_id: String,
    origin: Origin,
    dialog: Dialog,
    peer: Peer,
    call: mpsc::Sender<CallEvent>,
    /// The INVITE server transaction until its final response, for CANCEL and 487.
    pending_invite: Option<(TxId, Request)>,
    /// The 200 OK prepared for the initial INVITE, sent when the call answers.
    answer: Option<Response>,
    retransmit: Option<Uas2xxRetransmit>,
    media: LocalMedia,
    sdp: SdpSession,
    /// Our last description; `awaiting_answer` when it was an offer (delayed offer).
    local: LocalDescription,
    awaiting_answer: bool,
    timer: Option<SessionTimer>,
    expires: Option<Instant>,
    /// When baton, as the session's refresher, sends the next refresh.
    refresh: Option<Instant>,
    /// Our refresh in flight, by this method.
    refreshing: Option<Method>,
    /// The caller listed UPDATE in Allow: refreshes go as UPDATE, else as re-INVITE.
    peer_allows_update: bool,
    /// Our BYE is in flight: the leg goes when it completes.
    closing: bool,
    /// For a leg baton dialled to an agent: its key, as the call knows it, and the ACK of
    /// the 2xx, sent again for each retransmission of the 2xx.
    agent: Option<(String, Request)>,
}

impl Leg {
    /// Tells the call what happened on this leg: as itself for the caller's leg, as news
    /// of an agent leg for one baton dialled.
    fn notify(&self, ev: CallEvent) {
        let ev = match &self.agent {
            None => ev,
            Some((key, _)) => {
                let event = match ev {
                    CallEvent::Media(n) | CallEvent::Acked(Some(n)) => AgentEvent::Media(n),
                    CallEvent::Bye | CallEvent::Gone(_) | CallEvent::Cancelled => AgentEvent::Bye,
                    // Agents' keys reach nobody; an ACK without media changes nothing.
                    CallEvent::Dtmf(_) | CallEvent::Acked(None) | CallEvent::Agent { .. } => return,
                };
                CallEvent::Agent {
                    key: key.clone(),
                    event,
                }
            }
        };
        let _ = self.call.try_send(ev);
    }

    /// News of this agent leg for the call.
    fn agent_news(&self, event: AgentEvent) {
        if let Some((key, _)) = &self.agent {
            let _ = self.call.try_send(CallEvent::Agent {
                key: key.clone(),
                event,
            });
        }
    }

    /// Restarts the session timer: the session was just established or refreshed.
    fn refreshed(&mut self, now: Instant) {
        self.expires = self.timer.map(|t| t.expires_at(now));
        self.refresh = self.timer.and_then(|t| t.refresh_at(now));
    }
}

/// Where the server is in its life, as the endpoint sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Taking calls.
    Running,
    /// Refusing new calls, letting current ones finish.
    Draining,
    /// Hanging up the calls that remain.
    Ending,
}

/// Settings of the endpoint taken from the configuration.
pub struct EndpointConfig {
    /// Address put in Contact and SDP.
    pub advertised: IpAddr,
    pub invite_rate: u32,
    pub invite_burst: u32,
    pub max_calls: usize,
}

/// The SIP endpoint task's state.
pub struct Endpoint {
    shared: Arc<Shared>,
    transports: Transports,
    txl: TransactionLayer,
    config: EndpointConfig,
    limiter: RateLimiter,
    legs: HashMap<String, Leg>,
    /// Which leg each INVITE server transaction belongs to (for CANCEL).
    invites: HashMap<TxId, String>,
    /// Which leg each initial INVITE created, to refuse the same INVITE arriving by another
    /// path (a merged request, RFC 3261 §8.2.2.2).
    origins: HashMap<Origin, String>,
    /// Which leg each of our client transactions belongs to, and what it is for.
    clients: HashMap<TxId, (String, Sent)>,
    /// Agent legs ringing, by key.
    dialing: HashMap<String, Dialing>,
    /// Leg deadlines (2xx retransmission, session expiry), checked lazily.
    wakeups: BinaryHeap<Reverse<(Instant, String)>>,
    commands: mpsc::Sender<Command>,
    timers: SessionTimerConfig,
    draining: bool,
}

impl Endpoint {
    /// An endpoint sending through `transports`; `commands` is the sender half of the
    /// channel whose receiver goes to [`Endpoint::run`].
    pub fn new(
        shared: Arc<Shared>,
        transports: Transports,
        config: EndpointConfig,
        commands: mpsc::Sender<Command>,
    ) -> Endpoint {
        Endpoint {
            limiter: RateLimiter::new(config.invite_rate, config.invite_burst),
            shared,
            transports,
            txl: TransactionLayer::new(Default::default()),
            config,
            legs: HashMap::new(),
            invites: HashMap::new(),
            origins: HashMap::new(),
            clients: HashMap::new(),
            dialing: HashMap::new(),
            wakeups: BinaryHeap::new(),
            commands,
            // Only sessions whose UAC asks for a timer get one.
            timers: SessionTimerConfig {
                enabled: false,
                ..Default::default()
            },
            draining: false,
        }
    }

    /// Serves until `shutdown` fires and, after it, until every leg is gone.
    pub async fn run(
        mut self,
        mut inbound: mpsc::Receiver<Inbound>,
        mut commands: mpsc::Receiver<Command>,
        mut shutdown: tokio::sync::watch::Receiver<Phase>,
    ) {
        let mut ending = false;
        loop {
            let next = self.next_deadline();
            tokio::select! {
                item = inbound.recv() => match item {
                    Some(item) => self.handle_inbound(item, Instant::now()),
                    None => return,
                },
                Some(cmd) = commands.recv() => self.handle_command(cmd, Instant::now()),
                _ = sleep_until(next) => self.handle_timeouts(Instant::now()),
                changed = shutdown.changed(), if !ending => {
                    let phase = if changed.is_err() { Phase::Ending } else { *shutdown.borrow() };
                    if phase != Phase::Running && !self.draining {
                        self.draining = true;
                        info!(legs = self.legs.len(), "draining: new calls are refused");
                    }
                    if phase == Phase::Ending {
                        ending = true;
                        let keys: Vec<String> =
                            self.legs.keys().chain(self.dialing.keys()).cloned().collect();
                        for key in keys {
                            if let Some(leg) = self.legs.get(&key) {
                                leg.notify(CallEvent::Gone("shutdown"));
                            }
                            self.hangup(&key, Instant::now());
                        }
                    }
                }
            }
            self.flush(Instant::now());
            if self.draining
                && self.legs.is_empty()
                && self.clients.is_empty()
                && self.dialing.is_empty()
            {
                return;
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let leg = self.wakeups.peek().map(|Reverse((t, _))| *t);
        match (leg, self.txl.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Sends what the transaction layer produced and dispatches its events.
    fn flush(&mut self, now: Instant) {
        loop {
            while let Some(t) = self.txl.poll_transmit() {
                transmit(&self.shared, &self.transports, t);
            }
            let Some(ev) = self.txl.poll_event() else {
                return;
            };
            self.handle_tx_event(ev, now);
        }
    }

    fn handle_inbound(&mut self, item: Inbound, now: Instant) {
        match item {
            Inbound::Message(msg, peer) => {
                match &msg {
                    Message::Request(r) => {
                        self.shared
                            .metrics
                            .sip_request(r.method.as_str(), MetricDir::In);
                        if r.method == Method::Invite
                            && r.headers.to().and_then(|t| t.tag()).is_none()
                            && !self.limiter.allow(peer.addr.ip(), now)
                        {
                            // A flood gets no answer: answering would amplify it.
                            self.shared.metrics.sip_dropped();
                            return;
                        }
                    }
                    Message::Response(r) => {
                        self.shared.metrics.sip_response(r.status, MetricDir::In);
                    }
                }
                self.txl.handle_incoming(msg, peer, now);
            }
            Inbound::Malformed(err, raw, peer) => {
                self.shared.metrics.sip_malformed();
                debug!(peer = %peer.addr, error = %err, "malformed SIP message");
                // Responses and hopeless bytes are dropped; requests get their status.
                let (Some(status), Some(headers)) = (err.status(), parse::salvage(&raw)) else {
                    return;
                };
                if headers.cseq().is_some_and(|c| c.method == Method::Ack) {
                    return; // an ACK is never answered, however broken
                }
                let mut resp = Response {
                    status,
                    reason: baton_sip::build::reason_phrase(status).to_string(),
                    headers: Default::default(),
                    body: Vec::new(),
                };
                for h in headers.iter() {
                    if matches!(
                        h,
                        Header::Via(_)
                            | Header::From(_)
                            | Header::To(_)
                            | Header::CallId(_)
                            | Header::CSeq(_)
                    ) {
                        resp.headers.push(h.clone());
                    }
                }
                if resp.headers.top_via().is_none() {
                    return;
                }
                resp.set_to_tag(&new_tag());
                resp.headers.push(warning(&err.to_string()));
                self.txl.send_stateless(Message::Response(resp), peer);
            }
        }
    }

    fn handle_tx_event(&mut self, ev: TxEvent, now: Instant) {
        match ev {
            TxEvent::Request { tx, request, from } => {
                let span = info_span!("sip", call_id = request.headers.call_id().unwrap_or(""));
                let _g = span.enter();
                if let Err(rej) = self.handle_request(tx, &request, from, now) {
                    self.reject(tx, &request, rej, now);
                }
            }
            TxEvent::Cancel {
                tx,
                invite,
                request,
                ..
            } => self.handle_cancel(tx, invite, &request, now),
            TxEvent::Ack { request, .. } => self.handle_ack(&request, now),
            TxEvent::Response { tx, response } => match self.clients.get(&tx).cloned() {
                Some((key, Sent::Invite)) => self.agent_answered(&key, &response, now),
                Some(_) if response.status < 200 => {}
                Some((key, Sent::Refresh)) => self.refresh_answered(&key, &response, now),
                Some((key, Sent::Bye)) => {
                    self.clients.remove(&tx);
                    self.client_done(&key);
                }
                Some((_, Sent::Cancel | Sent::Notify)) => {
                    self.clients.remove(&tx);
                }
                None => {}
            },
            TxEvent::Timeout { tx, .. } | TxEvent::TransportError { tx } => {
                match self.clients.remove(&tx) {
                    Some((key, Sent::Bye)) => self.client_done(&key),
                    Some((key, Sent::Refresh)) => self.refresh_failed(&key, "no answer", now),
                    Some((key, Sent::Invite)) => self.agent_failed(&key, 408),
                    Some((_, Sent::Cancel | Sent::Notify)) | None => {}
                }
                if let Some(key) = self.invites.remove(&tx) {
                    // The ACK for a final non-2xx never came, or the transport broke:
                    // nothing more to tell the caller.
                    self.drop_leg(&key, CallEvent::Gone("transport"));
                }
            }
            TxEvent::StrayResponse { .. } => self.shared.metrics.sip_dropped(),
            TxEvent::Terminated { tx } => {
                self.invites.remove(&tx);
                self.clients.remove(&tx);
            }
        }
    }

    fn reject(&mut self, tx: TxId, req: &Request, rej: Reject, now: Instant) {
        if req.method == Method::Ack {
            return;
        }
        // §8.2.6.2: every response but 100 carries a To tag; in a dialog it is already there.
        let mut resp = req.response(rej.status, None).with_to_tag(&new_tag());
        if let Some(w) = &rej.warning {
            resp.headers.push(warning(w));
        }
        for h in rej.extra {
            resp.headers.push(h);
        }
        self.respond(tx, resp, now);
    }

    fn handle_request(
        &mut self,
        tx: TxId,
        req: &Request,
        from: Peer,
        now: Instant,
    ) -> Result<(), Reject> {
        if let Uri::Other { scheme, .. } = &req.uri {
            // §8.2.2.1: a Request-URI scheme baton does not understand.
            return Err(Reject::warn(
                416,
                format!("URI scheme {scheme:?} is not supported"),
            ));
        }
        check_require(req)?;
        let to_tag = req.headers.to().and_then(|t| t.tag()).map(str::to_string);
        if let Some(tag) = to_tag {
            return self.in_dialog(tx, &tag, req, from, now);
        }
        match req.method {
            Method::Invite => match self.colleague(req, now) {
                Some(answer) => answer.map(|resp| self.respond(tx, resp, now)),
                None => self.new_call(tx, req, from),
            },
            Method::Options => {
                self.respond(tx, options_response(req), now);
                Ok(())
            }
            Method::Register => self.register(tx, req, now),
            Method::Refer => Err(Reject::warn(
                403,
                "baton takes REFER only from an agent's phone, within its call",
            )),
            Method::Bye | Method::Update | Method::Info | Method::Prack => {
                Err(Reject::warn(481, "no such dialog"))
            }
            Method::Other(_) => Err(Reject::new(501).with(Header::Allow(ALLOW.to_vec()))),
            _ => Err(Reject::new(405).with(Header::Allow(ALLOW.to_vec()))),
        }
    }

    /// An agent's phone calling a colleague (consulting them before a transfer): baton is
    /// their redirect server, and the phones talk directly. `None` when the INVITE is not
    /// for an agent: it is a call for a dialplan.
    fn colleague(&self, req: &Request, now: Instant) -> Option<Result<Response, Reject>> {
        let wall_secs = crate::context::store::now_ms() / 1000;
        Some(match self.shared.agents.colleague(req, now, wall_secs)? {
            Colleague::Redirect(phones) => {
                let mut resp = req.response(302, None).with_to_tag(&new_tag());
                for uri in phones {
                    resp.headers.push(Header::Contact(Contact::Addr(NameAddr {
                        display: None,
                        uri,
                        params: Vec::new(),
                    })));
                }
                Ok(resp)
            }
            Colleague::Refused(answer) => Err(refusal(answer, "call refused")),
            Colleague::Unavailable => Err(Reject::warn(480, "no phone registered")),
        })
    }

    /// A softphone registering: baton is the registrar of its agents.
    fn register(&mut self, tx: TxId, req: &Request, now: Instant) -> Result<(), Reject> {
        let wall_secs = crate::context::store::now_ms() / 1000;
        match self.shared.agents.register(req, now, wall_secs) {
            Ok(contacts) => {
                let mut resp = req.response(200, None).with_to_tag(&new_tag());
                resp.headers.0.extend(contacts);
                resp.headers
                    .push(other("Date", &httpdate::fmt_http_date(SystemTime::now())));
                self.respond(tx, resp, now);
                Ok(())
            }
            Err(refused) => Err(refusal(refused, "registration refused")),
        }
    }

    fn respond(&mut self, tx: TxId, resp: Response, now: Instant) {
        if let Err(e) = self.txl.send_response(tx, resp, now) {
            debug!(error = %e, "response not sent");
        }
    }

    /// An out-of-dialog INVITE: route it, negotiate media, start the call.
    fn new_call(&mut self, tx: TxId, req: &Request, from: Peer) -> Result<(), Reject> {
        if self.draining {
            return Err(Reject::warn(503, "shutting down").with(other("Retry-After", "30")));
        }
        let origin: Origin = (
            req.headers.call_id().unwrap_or_default().to_string(),
            req.headers
                .from()
                .and_then(|f| f.tag())
                .unwrap_or_default()
                .to_string(),
            req.headers.cseq().map_or(0, |c| c.seq),
        );
        if self.origins.contains_key(&origin) {
            return Err(Reject::warn(
                482,
                "merged request: this INVITE already arrived by another path",
            ));
        }
        if self.legs.len() >= self.config.max_calls {
            return Err(Reject::warn(503, "call limit reached").with(other("Retry-After", "5")));
        }
        if matches!(req.uri, Uri::Other { .. }) {
            return Err(Reject::new(416));
        }
        let user = req.uri.user().unwrap_or_default().to_owned();
        if !req.body.is_empty() {
            let ct = req.headers.content_type().unwrap_or("");
            let mime = ct.split(';').next().unwrap_or("").trim();
            if !mime.eq_ignore_ascii_case("application/sdp") {
                return Err(Reject::warn(
                    415,
                    format!("body of type {mime:?}: only application/sdp"),
                )
                .with(accept_sdp()));
            }
        }
        if let Some(accept) = req.headers.other("Accept").next() {
            let ok = accept.split(',').any(|a| {
                let a = a.split(';').next().unwrap_or("").trim();
                a.eq_ignore_ascii_case("application/sdp")
                    || a == "*/*"
                    || a.eq_ignore_ascii_case("application/*")
            });
            if !ok {
                return Err(
                    Reject::warn(406, "baton answers with application/sdp").with(accept_sdp())
                );
            }
        }
        let plans = self.shared.plans.current();
        let Some(plan) = plans.dialplans.route(&user) else {
            self.shared.metrics.call_result("not_found");
            return Err(Reject::warn(404, "no dialplan for this number"));
        };
        let plan = Arc::new(plan.clone());
        let timer = session_timer(req, &self.timers)?;
        let offer = if req.body.is_empty() {
            None
        } else {
            Some(RemoteDescription::parse(&req.body).map_err(Reject::bad_sdp)?)
        };

        let sockets = call::RtpSockets::bind(&self.shared.ports, self.shared.bind_ip)
            .ok_or_else(|| Reject::warn(503, "no free RTP port").with(other("Retry-After", "5")))?;
        let media = LocalMedia::new(self.config.advertised, sockets.port());
        let (local, negotiated, awaiting_answer) = match &offer {
            Some(offer) => match baton_sdp::answer(offer, &media) {
                Ok(a) => (a.description, Some(a.negotiated), false),
                Err(e) => {
                    self.shared.metrics.call_result("incompatible");
                    return Err(Reject::unacceptable(&e).with(accept_sdp()));
                }
            },
            None => (baton_sdp::offer(&media), None, true),
        };
        let mut sdp = SdpSession::new(rand::random::<u32>().into());
        let body = sdp.write(&local).to_vec();

        let local_tag = new_tag();
        let mut ok = req.response(200, None).with_to_tag(&local_tag);
        ok.headers
            .push(Header::Contact(Contact::Addr(self.contact(from.transport))));
        advertise(&mut ok);
        if let Some(t) = &timer {
            t.apply(&mut ok);
        }
        ok.headers
            .push(Header::ContentType("application/sdp".into()));
        ok.body = body;
        let dialog = Dialog::uas(req, &ok).map_err(|e| Reject::warn(e.status(), e.to_string()))?;

        let call_id = req.headers.call_id().unwrap_or_default().to_string();
        let id = call::new_call_id();
        let info = self.shared.calls.insert(CallInfo {
            id: id.clone(),
            sip_call_id: call_id.clone(),
            from: req
                .headers
                .from()
                .map(|f| f.to_string())
                .unwrap_or_default(),
            to: req.headers.to().map(|t| t.to_string()).unwrap_or_default(),
            dialplan: plan.name.clone(),
            state: CallState::Ringing,
            started_at: SystemTime::now(),
            ended_at: None,
            dtmf: String::new(),
            result: None,
            recordings: Vec::new(),
            media: MediaStats::default(),
            transcript: Vec::new(),
            vibe: None,
        });
        self.shared.metrics.call_started();
        let (events_tx, events_rx) = mpsc::channel(CALL_QUEUE);
        info!(call = %id, plan = %plan.name, from = %from.addr, "new call");
        let caller = req
            .headers
            .from()
            .and_then(|f| f.uri.user())
            .map(str::to_owned);
        call::spawn(CallSetup {
            id,
            caller,
            key: local_tag.clone(),
            plan,
            prompts: plans.prompts.clone(),
            sockets,
            media: negotiated,
            info,
            shared: self.shared.clone(),
            commands: self.commands.clone(),
            events: events_rx,
            events_tx: events_tx.downgrade(),
        });
        self.invites.insert(tx, local_tag.clone());
        self.origins.insert(origin.clone(), local_tag.clone());
        self.legs.insert(
            local_tag,
            Leg {
                call_id,
                origin,
                dialog,
                peer: from,
                call: events_tx,
                pending_invite: Some((tx, req.clone())),
                answer: Some(ok),
                retransmit: None,
                media,
                sdp,
                local,
                awaiting_answer,
                timer,
                expires: None,
                refresh: None,
                refreshing: None,
                peer_allows_update: req.headers.allow().any(|m| *m == Method::Update),
                closing: false,
                agent: None,
            },
        );
        Ok(())
    }

    /// Our Contact: where in-dialog requests reach this endpoint.
    fn contact(&self, transport: Transport) -> NameAddr {
        let local = self.transports.local_addr();
        let mut params = Vec::new();
        if transport == Transport::Tcp {
            params.push(Param::new("transport", "tcp"));
        }
        NameAddr {
            display: None,
            uri: Uri::Sip(SipUri {
                secure: false,
                user: Some("baton".into()),
                password: None,
                host: host_string(self.config.advertised),
                port: Some(local.port()),
                params,
                headers: Vec::new(),
            }),
            params: Vec::new(),
        }
    }

    fn handle_command(&mut self, cmd: Command, now: Instant) {
        match cmd {
            Command::Ring { key } => {
                let Some(leg) = self.legs.get(&key) else {
                    return;
                };
                let Some((tx, req)) = &leg.pending_invite else {
                    return;
                };
                let (tx, ringing) = (*tx, req.response(180, None).with_to_tag(&key));
                self.respond(tx, ringing, now);
            }
            Command::Answer { key } => self.answer(&key, now),
            Command::Hangup { key } => self.hangup(&key, now),
            Command::Dial(dial) => self.dial(*dial, now),
            Command::Referred { key, status } => self.notify_refer(&key, status, now),
        }
    }

    /// Rings an agent's phone: an INVITE offering our media, carrying where the call's
    /// context is (Call-Info, RFC 3261 §20.9) so that their desktop can show it at once.
    fn dial(&mut self, d: Dial, now: Instant) {
        let Some(call) = self.legs.get(&d.caller).map(|l| l.call.clone()) else {
            return; // the caller left while the command was on its way
        };
        let failed = |status| {
            let _ = call.try_send(CallEvent::Agent {
                key: d.key.clone(),
                event: AgentEvent::Failed(status),
            });
        };
        let Some(peer) = uri_peer(&d.target) else {
            warn!(target = %d.target, "agent's contact is not an address baton can reach");
            return failed(503);
        };
        let media = LocalMedia::new(self.config.advertised, d.port);
        let local = baton_sdp::offer(&media);
        let mut sdp = SdpSession::new(rand::random::<u32>().into());
        let host = host_string(self.config.advertised);
        let from_uri = Uri::Sip(SipUri {
            secure: false,
            user: Some(d.from_user.clone().unwrap_or_else(|| "anonymous".into())),
            password: None,
            host,
            port: None,
            params: Vec::new(),
            headers: Vec::new(),
        });
        let mut headers = Headers::default();
        headers.push(Header::MaxForwards(baton_sip::build::DEFAULT_MAX_FORWARDS));
        headers.push(Header::From(NameAddr {
            display: None,
            uri: from_uri,
            params: vec![Param::new("tag", &d.key)],
        }));
        headers.push(Header::To(NameAddr {
            display: None,
            uri: d.target.clone(),
            params: Vec::new(),
        }));
        headers.push(Header::CallId(new_call_id()));
        headers.push(Header::CSeq(CSeq {
            seq: 1,
            method: Method::Invite,
        }));
        headers.push(Header::Contact(Contact::Addr(self.contact(peer.transport))));
        headers.push(other(
            "Call-Info",
            &format!("<{}>;purpose=info", d.context_url),
        ));
        headers.push(other("X-Baton-Call-Id", &d.call_id));
        if let Some(replaces) = &d.replaces {
            // Required, so that a phone without Replaces refuses (420) instead of ringing
            // the agent with a second call beside the one it should replace.
            headers.push(other("Replaces", &replaces.to_string()));
            headers.push(Header::Require(vec!["replaces".into()]));
        }
        headers.push(Header::Allow(ALLOW.to_vec()));
        headers.push(Header::Supported(
            SUPPORTED.iter().map(|s| s.to_string()).collect(),
        ));
        headers.push(Header::ContentType("application/sdp".into()));
        let mut invite = Request {
            method: Method::Invite,
            uri: d.target.clone(),
            headers,
            body: sdp.write(&local).to_vec(),
        };
        invite.push_via(self.via(peer.transport));
        match self.txl.send_request(invite.clone(), peer, now) {
            Ok(tx) => {
                info!(agent_leg = %d.key, target = %d.target, "ringing an agent");
                self.clients.insert(tx, (d.key.clone(), Sent::Invite));
                self.dialing.insert(
                    d.key,
                    Dialing {
                        invite,
                        peer,
                        call,
                        media,
                        sdp,
                        local,
                        provisional: false,
                        cancel: false,
                    },
                );
            }
            Err(e) => {
                warn!(error = %e, "agent INVITE not sent");
                failed(503);
            }
        }
    }

    /// A response to an agent leg's INVITE: ringing, answered (ACKed, and the leg becomes a
    /// dialog like the caller's), or refused.
    fn agent_answered(&mut self, key: &str, resp: &Response, now: Instant) {
        if let Some(leg) = self.legs.get(key) {
            // The 2xx again: our ACK was lost (RFC 3261 §13.2.2.4).
            if let (true, Some((_, ack))) = (resp.is_success(), &leg.agent) {
                let peer = target_peer(&leg.dialog, leg.peer);
                self.send_ack(ack.clone(), peer);
            }
            return;
        }
        let Some(d) = self.dialing.get_mut(key) else {
            return;
        };
        if resp.status < 200 {
            if resp.status > 100 && !d.provisional {
                d.provisional = true;
                let _ = d.call.try_send(CallEvent::Agent {
                    key: key.to_owned(),
                    event: AgentEvent::Ringing,
                });
                if d.cancel {
                    self.cancel(key, now);
                }
            }
            return;
        }
        let Some(d) = self.dialing.remove(key) else {
            return;
        };
        if !resp.is_success() {
            // The transaction layer ACKs a final error itself (RFC 3261 §17.1.1.3).
            if !d.cancel {
                let _ = d.call.try_send(CallEvent::Agent {
                    key: key.to_owned(),
                    event: AgentEvent::Failed(resp.status),
                });
            }
            return;
        }
        let dialog = match Dialog::uac(&d.invite, resp) {
            Ok(dialog) => dialog,
            Err(e) => {
                warn!(error = %e, "agent's 2xx makes no dialog");
                let _ = d.call.try_send(CallEvent::Agent {
                    key: key.to_owned(),
                    event: AgentEvent::Failed(502),
                });
                return;
            }
        };
        let mut ack = dialog.ack_for(resp);
        let peer = target_peer(&dialog, d.peer);
        ack.push_via(self.via(peer.transport));
        self.send_ack(ack.clone(), peer);
        let answer = accept_answer(&d.local, &resp.body);
        let call_id = d.invite.headers.call_id().unwrap_or_default().to_owned();
        self.legs.insert(
            key.to_owned(),
            Leg {
                origin: (call_id.clone(), key.to_owned(), 1),
                call_id,
                dialog,
                peer: d.peer,
                call: d.call,
                pending_invite: None,
                answer: None,
                retransmit: None,
                media: d.media,
                sdp: d.sdp,
                local: d.local,
                awaiting_answer: false,
                timer: None,
                expires: None,
                refresh: None,
                refreshing: None,
                peer_allows_update: resp.headers.allow().any(|m| *m == Method::Update),
                closing: false,
                agent: Some((key.to_owned(), ack)),
            },
        );
        let leg = &self.legs[key];
        match answer {
            Ok(n) if !d.cancel => leg.agent_news(AgentEvent::Answered(n)),
            Ok(_) => self.hangup(key, now),
            Err(e) => {
                warn!(error = %e, "agent's SDP answer is unusable; hanging up");
                leg.agent_news(AgentEvent::Failed(488));
                self.hangup(key, now);
            }
        }
    }

    fn send_ack(&self, ack: Request, to: Peer) {
        transmit(
            &self.shared,
            &self.transports,
            Transmit {
                msg: Message::Request(ack),
                to,
                tx: None,
            },
        );
    }

    /// The agent leg's INVITE got no answer at all, or could not be sent.
    fn agent_failed(&mut self, key: &str, status: u16) {
        if let Some(d) = self.dialing.remove(key) {
            if !d.cancel {
                let _ = d.call.try_send(CallEvent::Agent {
                    key: key.to_owned(),
                    event: AgentEvent::Failed(status),
                });
            }
        }
    }

    /// Gives up an agent leg that rings: CANCEL once the phone has answered provisionally,
    /// as RFC 3261 §9.1 requires, else as soon as it does.
    fn cancel(&mut self, key: &str, now: Instant) {
        let Some(d) = self.dialing.get_mut(key) else {
            return;
        };
        d.cancel = true;
        if !d.provisional {
            return;
        }
        let cancel = d.invite.cancel();
        let peer = d.peer;
        match self.txl.send_request(cancel, peer, now) {
            Ok(tx) => {
                self.clients.insert(tx, (key.to_owned(), Sent::Cancel));
            }
            Err(e) => debug!(error = %e, "CANCEL not sent"),
        }
    }

    /// Sends the prepared 200 OK for the initial INVITE.
    fn answer(&mut self, key: &str, now: Instant) {
        let Some(leg) = self.legs.get_mut(key) else {
            return;
        };
        let (Some((tx, _)), Some(ok)) = (leg.pending_invite.take(), leg.answer.take()) else {
            return;
        };
        leg.retransmit = Some(Uas2xxRetransmit::new(
            ok.clone(),
            leg.peer,
            &self.txl.config().timers,
            now,
        ));
        leg.refreshed(now);
        let wake = leg_deadline(leg);
        if let Err(e) = self.txl.send_response(tx, ok, now) {
            debug!(error = %e, "200 OK not sent");
        }
        self.invites.remove(&tx);
        if let Some(t) = wake {
            self.wakeups.push(Reverse((t, key.to_string())));
        }
    }

    /// The call wants to end: BYE if answered, otherwise a final error for the INVITE.
    fn hangup(&mut self, key: &str, now: Instant) {
        if self.dialing.contains_key(key) {
            return self.cancel(key, now);
        }
        let Some(leg) = self.legs.get_mut(key) else {
            return;
        };
        if let Some((tx, req)) = leg.pending_invite.take() {
            let resp = req.response(480, None).with_to_tag(key);
            self.invites.remove(&tx);
            self.remove_leg(key);
            self.respond(tx, resp, now);
            return;
        }
        if leg.closing {
            return;
        }
        leg.closing = true;
        leg.retransmit = None;
        let bye = leg.dialog.request(Method::Bye);
        if !self.send_in_dialog(key, bye, Sent::Bye, now) {
            self.remove_leg(key);
        }
    }

    /// Tells an agent's phone how the transfer it asked for goes: a NOTIFY of the implicit
    /// `refer` subscription with the target's status as a sipfrag (RFC 3515 §2.4.5); a
    /// final status ends the subscription.
    fn notify_refer(&mut self, key: &str, status: u16, now: Instant) {
        let Some(leg) = self.legs.get_mut(key).filter(|l| !l.closing) else {
            return;
        };
        let mut notify = leg.dialog.request(Method::Notify);
        notify.headers.push(other("Event", "refer"));
        let state = if status < 200 {
            "active;expires=60"
        } else {
            "terminated;reason=noresource"
        };
        notify.headers.push(other("Subscription-State", state));
        notify
            .headers
            .push(Header::ContentType("message/sipfrag;version=2.0".into()));
        notify.body = format!(
            "SIP/2.0 {status} {}\r\n",
            baton_sip::build::reason_phrase(status)
        )
        .into_bytes();
        if !self.send_in_dialog(key, notify, Sent::Notify, now) {
            debug!("NOTIFY not sent");
        }
    }

    /// An agent's phone asks to transfer its call (a REFER, RFC 3515): accepted, and the
    /// call rings the colleague it names, or replaces the agents' consultation call with
    /// itself when the Refer-To carries Replaces (an attended transfer, RFC 5589 §7), or
    /// goes back to the bot when it names `sip:bot@…` (with a `disposition` parameter).
    fn refer(&mut self, tx: TxId, tag: &str, req: &Request, now: Instant) -> Result<(), Reject> {
        let Some(leg) = self.legs.get(tag) else {
            return Err(Reject::warn(481, "no such dialog"));
        };
        if leg.agent.is_none() {
            return Err(Reject::warn(
                403,
                "only an agent's phone may transfer the call",
            ));
        }
        let targets: Vec<&str> = req
            .headers
            .other("Refer-To")
            .chain(req.headers.other("r"))
            .collect();
        let [target] = targets[..] else {
            return Err(Reject::warn(400, "a REFER needs exactly one Refer-To"));
        };
        let target: NameAddr = target
            .parse()
            .map_err(|_| Reject::warn(400, "Refer-To is not a SIP address"))?;
        let mut target = target.uri;
        // The URI's headers are for the INVITE the REFER asks for (RFC 3515 §2.1); the
        // only one baton sends on is Replaces.
        let headers = match &mut target {
            Uri::Sip(uri) => std::mem::take(&mut uri.headers),
            Uri::Tel(_) | Uri::Other { .. } => Vec::new(),
        };
        let mut replaces = None;
        for (name, value) in headers {
            if !name.eq_ignore_ascii_case("Replaces") {
                continue;
            }
            if replaces.is_some() {
                return Err(Reject::warn(400, "Refer-To names Replaces twice"));
            }
            let parsed: Replaces = value
                .parse()
                .map_err(|e| Reject::warn(400, format!("Replaces in Refer-To: {e}")))?;
            replaces = Some(parsed);
        }
        // A transfer to the bot (`sip:bot@…`) hands the caller back to it.
        match crate::desk::Handback::from_refer(&target) {
            Some(Err(e)) => return Err(Reject::warn(400, format!("Refer-To: {e}"))),
            Some(Ok(_)) if replaces.is_some() => {
                return Err(Reject::warn(
                    400,
                    "Refer-To: a hand back to the bot takes no Replaces",
                ))
            }
            _ => {}
        }
        self.respond(tx, req.response(202, None), now);
        self.notify_refer(tag, 100, now);
        if let Some(leg) = self.legs.get(tag) {
            leg.agent_news(AgentEvent::Refer { target, replaces });
        }
        Ok(())
    }

    /// Sends a request of a leg's dialog as a new client transaction, to the dialog's
    /// remote target; false if it could not be sent.
    fn send_in_dialog(&mut self, key: &str, mut req: Request, sent: Sent, now: Instant) -> bool {
        let Some(leg) = self.legs.get(key) else {
            return false;
        };
        let peer = target_peer(&leg.dialog, leg.peer);
        req.push_via(self.via(peer.transport));
        let method = req.method.clone();
        match self.txl.send_request(req, peer, now) {
            Ok(tx) => {
                self.clients.insert(tx, (key.to_string(), sent));
                true
            }
            Err(e) => {
                warn!(error = %e, %method, "request not sent");
                false
            }
        }
    }

    /// A Via for a request we send, with a fresh branch.
    fn via(&self, transport: Transport) -> Via {
        let name = if transport == Transport::Udp {
            "UDP"
        } else {
            "TCP"
        };
        Via::with_new_branch(
            name,
            host_string(self.config.advertised),
            Some(self.transports.local_addr().port()),
        )
    }

    /// Refreshes the session as its refresher (RFC 4028 §7.4): an UPDATE without a body
    /// when the caller allows UPDATE (nothing to renegotiate), otherwise a re-INVITE
    /// offering the unchanged session description.
    fn send_refresh(&mut self, key: &str, now: Instant) {
        let Some(leg) = self.legs.get(key) else {
            return;
        };
        let contact = self.contact(leg.peer.transport);
        let leg = self.legs.get_mut(key).expect("leg looked up above");
        let Some(timer) = leg.timer else {
            return;
        };
        leg.refresh = None;
        if leg.retransmit.is_some() || leg.awaiting_answer {
            // The caller's re-INVITE is still open (§14.1): refresh once it completes.
            leg.refresh = Some(now + Duration::from_millis(GLARE_RETRY_MS));
            return;
        }
        let method = if leg.peer_allows_update {
            Method::Update
        } else {
            Method::Invite
        };
        let mut req = leg.dialog.request(method.clone());
        req.headers.push(Header::Contact(Contact::Addr(contact)));
        req.headers.push(timer.refresh_header());
        req.headers.push(Header::Supported(
            SUPPORTED.iter().map(|s| s.to_string()).collect(),
        ));
        if method == Method::Invite {
            req.headers
                .push(Header::ContentType("application/sdp".into()));
            req.body = leg.sdp.write(&leg.local).to_vec();
        }
        leg.refreshing = Some(method);
        if !self.send_in_dialog(key, req, Sent::Refresh, now) {
            self.refresh_failed(key, "not sent", now);
        }
    }

    /// The final response to our refresh (each 2xx to a re-INVITE, retransmissions too,
    /// is acknowledged).
    fn refresh_answered(&mut self, key: &str, resp: &Response, now: Instant) {
        let Some(leg) = self.legs.get_mut(key) else {
            return;
        };
        let ok = (200..300).contains(&resp.status);
        let invite = resp
            .headers
            .cseq()
            .is_some_and(|c| c.method == Method::Invite);
        if ok && invite {
            let mut ack = leg.dialog.ack_for(resp);
            let peer = target_peer(&leg.dialog, leg.peer);
            ack.push_via(self.via(peer.transport));
            transmit(
                &self.shared,
                &self.transports,
                Transmit {
                    msg: Message::Request(ack),
                    to: peer,
                    tx: None,
                },
            );
        }
        let Some(leg) = self.legs.get_mut(key) else {
            return;
        };
        let Some(sent) = leg.refreshing.take().filter(|_| !leg.closing) else {
            return; // a retransmitted 2xx, or the call is ending anyway
        };
        match resp.status {
            200..=299 => {
                leg.dialog.handle_response(resp);
                if sent == Method::Invite && !resp.body.is_empty() {
                    match accept_answer(&leg.local, &resp.body) {
                        Ok(n) => leg.notify(CallEvent::Media(n)),
                        Err(e) => {
                            warn!(error = %e, "the refresh's SDP answer is unusable");
                            return self.refresh_failed(key, "bad answer", now);
                        }
                    }
                }
                leg.timer = leg.timer.and_then(|t| t.after_our_refresh(resp));
                leg.refreshed(now);
            }
            405 | 501 if sent == Method::Update => {
                // The caller listed UPDATE but does not take it: refresh by re-INVITE.
                leg.peer_allows_update = false;
                leg.refresh = Some(now);
            }
            422 => match (&mut leg.timer, resp.headers.min_se()) {
                (Some(t), Some(min)) if min > t.interval => {
                    t.interval = min;
                    leg.refresh = Some(now);
                }
                _ => return self.refresh_failed(key, "422 without a larger Min-SE", now),
            },
            491 => {
                let wait = rand::random::<u64>() % GLARE_RETRY_MS;
                leg.refresh = Some(now + Duration::from_millis(wait));
            }
            // The dialog is gone or the caller unreachable (RFC 4028 §10, RFC 5057).
            408 | 481 => return self.refresh_failed(key, "dialog gone", now),
            status => {
                // Anything else leaves the session to expire, as RFC 4028 §10 says.
                warn!(call_id = %leg.call_id, status, "session refresh refused");
            }
        }
        if let Some(t) = leg_deadline(leg) {
            self.wakeups.push(Reverse((t, key.to_string())));
        }
    }

    /// Our refresh got no usable answer: the session cannot be kept alive, so it ends now.
    fn refresh_failed(&mut self, key: &str, why: &str, now: Instant) {
        let Some(leg) = self.legs.get_mut(key) else {
            return;
        };
        leg.refreshing = None;
        info!(call_id = %leg.call_id, why, "session refresh failed; ending the call");
        leg.notify(CallEvent::Gone("refresh_failed"));
        self.hangup(key, now);
    }

    /// Forgets a leg and its origin.
    fn remove_leg(&mut self, key: &str) -> Option<Leg> {
        let leg = self.legs.remove(key)?;
        self.origins.remove(&leg.origin);
        Some(leg)
    }

    fn client_done(&mut self, key: &str) {
        if self.legs.get(key).is_some_and(|l| l.closing) {
            self.remove_leg(key);
        }
    }

    fn drop_leg(&mut self, key: &str, why: CallEvent) {
        if let Some(leg) = self.remove_leg(key) {
            leg.notify(why);
        }
    }

    fn handle_cancel(&mut self, tx: TxId, invite: Option<TxId>, req: &Request, now: Instant) {
        let Some(invite) = invite else {
            self.reject(tx, req, Reject::new(481), now);
            return;
        };
        self.respond(tx, req.response(200, None), now);
        let Some(key) = self.invites.get(&invite).cloned() else {
            return;
        };
        let Some(leg) = self.legs.get_mut(&key) else {
            return;
        };
        if let Some((inv_tx, inv)) = leg.pending_invite.take() {
            let resp = inv.response(487, None).with_to_tag(&key);
            self.respond(inv_tx, resp, now);
            self.invites.remove(&inv_tx);
            self.drop_leg(&key, CallEvent::Cancelled);
        }
    }

    fn handle_ack(&mut self, ack: &Request, now: Instant) {
        let Some(tag) = ack.headers.to().and_then(|t| t.tag()) else {
            return;
        };
        let Some(leg) = self.legs.get_mut(tag) else {
            return;
        };
        if leg.call_id != ack.headers.call_id().unwrap_or("") {
            return;
        }
        let Some(rt) = &mut leg.retransmit else {
            return; // a retransmitted ACK
        };
        if !rt.matches_ack(ack) {
            return;
        }
        rt.handle_ack();
        leg.retransmit = None;
        leg.dialog.confirm();
        let mut media = None;
        if leg.awaiting_answer {
            leg.awaiting_answer = false;
            match accept_answer(&leg.local, &ack.body) {
                Ok(n) => media = Some(n),
                Err(e) => {
                    // RFC 3261 §13.3.1.4 leaves us nothing to answer: end the call.
                    warn!(error = %e, "the ACK's SDP answer is unusable; ending the call");
                    leg.notify(CallEvent::Gone("bad_answer"));
                    let key = tag.to_string();
                    self.hangup(&key, now);
                    return;
                }
            }
        }
        leg.notify(CallEvent::Acked(media));
    }

    fn in_dialog(
        &mut self,
        tx: TxId,
        tag: &str,
        req: &Request,
        from: Peer,
        now: Instant,
    ) -> Result<(), Reject> {
        let Some(leg) = self.legs.get_mut(tag) else {
            return Err(Reject::warn(481, "no such dialog"));
        };
        if leg.call_id != req.headers.call_id().unwrap_or("") {
            return Err(Reject::warn(481, "no such dialog"));
        }
        leg.dialog
            .check_request(req)
            .map_err(|e| Reject::warn(e.status(), e.to_string()))?;
        match req.method {
            Method::Bye => {
                let leg = self.remove_leg(tag).expect("leg looked up above");
                leg.notify(CallEvent::Bye);
                self.respond(tx, req.response(200, None), now);
                Ok(())
            }
            Method::Invite | Method::Update => {
                let ours_open = leg.refreshing == Some(Method::Invite);
                if leg.pending_invite.is_some() || leg.retransmit.is_some() || ours_open {
                    // §14.2: an INVITE while ours is unfinished.
                    return Err(Reject::new(if req.method == Method::Invite {
                        491
                    } else {
                        500
                    })
                    .with(other("Retry-After", "1")));
                }
                let timer = session_timer(req, &self.timers)?;
                let mut resp = req.response(200, None);
                let mut changed = None;
                if !req.body.is_empty() {
                    let offer = RemoteDescription::parse(&req.body).map_err(Reject::bad_sdp)?;
                    let answer = baton_sdp::answer(&offer, &leg.media)
                        .map_err(|e| Reject::unacceptable(&e))?;
                    leg.local = answer.description;
                    changed = Some(answer.negotiated);
                    resp.body = leg.sdp.write(&leg.local).to_vec();
                } else if req.method == Method::Invite {
                    // A re-INVITE without SDP asks for our offer; the answer comes in the ACK.
                    resp.body = leg.sdp.write(&leg.local).to_vec();
                    leg.awaiting_answer = true;
                }
                if !resp.body.is_empty() {
                    resp.headers
                        .push(Header::ContentType("application/sdp".into()));
                }
                resp.headers
                    .push(Header::Contact(Contact::Addr(self.contact(from.transport))));
                advertise(&mut resp);
                let leg = self.legs.get_mut(tag).expect("leg looked up above");
                leg.timer = timer.or(leg.timer);
                if let Some(t) = &leg.timer {
                    t.apply(&mut resp);
                }
                leg.refreshed(now);
                if req.method == Method::Invite {
                    leg.retransmit = Some(Uas2xxRetransmit::new(
                        resp.clone(),
                        leg.peer,
                        &self.txl.config().timers,
                        now,
                    ));
                }
                if let Some(n) = changed {
                    leg.notify(CallEvent::Media(n));
                }
                let wake = leg_deadline(leg);
                self.respond(tx, resp, now);
                if let Some(t) = wake {
                    self.wakeups.push(Reverse((t, tag.to_string())));
                }
                Ok(())
            }
            Method::Options => {
                self.respond(tx, options_response(req), now);
                Ok(())
            }
            Method::Refer => self.refer(tx, tag, req, now),
            Method::Info => {
                // Key presses some carriers and phones send instead of RFC 4733 events.
                // Other INFO packages are acknowledged so the peer does not tear down.
                if let Some(digit) = info_dtmf(req) {
                    if let Some(leg) = self.legs.get(tag) {
                        leg.notify(CallEvent::Dtmf(digit));
                    }
                }
                self.respond(tx, req.response(200, None), now);
                Ok(())
            }
            Method::Other(_) => Err(Reject::new(501).with(Header::Allow(ALLOW.to_vec()))),
            _ => Err(Reject::new(405).with(Header::Allow(ALLOW.to_vec()))),
        }
    }

    fn handle_timeouts(&mut self, now: Instant) {
        self.txl.handle_timeout(now);
        while let Some(Reverse((t, _))) = self.wakeups.peek() {
            if *t > now {
                break;
            }
            let Some(Reverse((_, key))) = self.wakeups.pop() else {
                break;
            };
            let Some(leg) = self.legs.get_mut(&key) else {
                continue;
            };
            let mut gone = None;
            if let Some(rt) = &mut leg.retransmit {
                rt.handle_timeout(now);
                while let Some(t) = rt.poll_transmit() {
                    transmit(&self.shared, &self.transports, t);
                }
                if let Some(Uas2xxEvent::AckTimeout) = rt.poll_event() {
                    gone = Some("ack_timeout");
                }
            }
            if leg.expires.is_some_and(|e| e <= now) {
                gone = Some("session_expired");
            }
            let refresh_due = leg.refresh.is_some_and(|r| r <= now) && leg.refreshing.is_none();
            if let Some(why) = gone {
                info!(call_id = %leg.call_id, why, "ending call");
                leg.notify(CallEvent::Gone(why));
                leg.retransmit = None;
                self.hangup(&key, now);
                continue;
            }
            if refresh_due {
                self.send_refresh(&key, now);
            }
            if let Some(t) = self.legs.get(&key).and_then(leg_deadline) {
                self.wakeups.push(Reverse((t, key)));
            }
        }
    }
}

/// Puts a message on the wire, counted by method or status.
fn transmit(shared: &Shared, transports: &Transports, t: Transmit) {
    match &t.msg {
        Message::Request(r) => shared
            .metrics
            .sip_request(r.method.as_str(), MetricDir::Out),
        Message::Response(r) => shared.metrics.sip_response(r.status, MetricDir::Out),
    }
    transports.send(&t.msg, t.to);
}

/// The earliest time a leg needs attention.
fn leg_deadline(leg: &Leg) -> Option<Instant> {
    let rt = leg.retransmit.as_ref().and_then(|r| r.poll_timeout());
    let refresh = leg.refresh.filter(|_| leg.refreshing.is_none());
    [rt, leg.expires, refresh].into_iter().flatten().min()
}

/// Where in-dialog requests go: the remote target over the transport the dialog uses.
/// A target that is a name (not an address) falls back to where the INVITE came from.
fn target_peer(dialog: &Dialog, came_from: Peer) -> Peer {
    if let Some(Uri::Sip(u)) = dialog
        .route_set
        .first()
        .map(|r| &r.uri)
        .or(Some(&dialog.remote_target))
    {
        let host = u.host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = host.parse::<IpAddr>() {
            let port = u.port.unwrap_or(5060);
            return Peer {
                addr: SocketAddr::new(ip, port),
                transport: came_from.transport,
            };
        }
    }
    came_from
}

/// Where a request to `uri` goes: its host must be an address (an agent's registered
/// Contact is); `transport=tcp` picks TCP.
fn uri_peer(uri: &Uri) -> Option<Peer> {
    let Uri::Sip(u) = uri else {
        return None;
    };
    let host = u.host.trim_start_matches('[').trim_end_matches(']');
    let ip = host.parse::<IpAddr>().ok()?;
    let tcp = u.params.iter().any(|p| {
        p.name.eq_ignore_ascii_case("transport")
            && p.value
                .as_deref()
                .is_some_and(|v| v.eq_ignore_ascii_case("tcp"))
    });
    Some(Peer {
        addr: SocketAddr::new(ip, u.port.unwrap_or(5060)),
        transport: if tcp { Transport::Tcp } else { Transport::Udp },
    })
}

/// The media agreed by the SDP answer in `body` to our offer `local` (in an ACK, or in the
/// 2xx to our re-INVITE), or why the answer is unusable.
fn accept_answer(local: &LocalDescription, body: &[u8]) -> Result<Negotiated, String> {
    let answer = RemoteDescription::parse(body).map_err(|e| e.to_string())?;
    baton_sdp::accept_answer(local, &answer).map_err(|e| e.to_string())
}

/// The session timer for an INVITE or UPDATE (RFC 4028), or 422.
fn session_timer(
    req: &Request,
    config: &SessionTimerConfig,
) -> Result<Option<SessionTimer>, Reject> {
    match negotiate_session_timer(req, config) {
        Ok(t) => Ok(t),
        Err(e @ SessionTimerError::IntervalTooSmall { min_se, .. }) => {
            Err(Reject::new(e.status()).with(Header::MinSe(min_se)))
        }
    }
}

/// Allow and Supported: what baton can do, in every 2xx to INVITE, UPDATE and OPTIONS.
fn advertise(resp: &mut Response) {
    resp.headers.push(Header::Allow(ALLOW.to_vec()));
    resp.headers.push(Header::Supported(
        SUPPORTED.iter().map(|s| s.to_string()).collect(),
    ));
}

/// The answer to OPTIONS, in or out of a dialog (carriers ping with it); outside a
/// dialog it needs a To tag of its own (§8.2.6.2).
/// The error response of a refused REGISTER or colleague's call; a refusal of the
/// credentials is logged as `what`.
fn refusal(refused: Refusal, what: &str) -> Reject {
    match refused {
        Refusal::Challenge(challenges) => {
            challenges.into_iter().fold(Reject::new(401), Reject::with)
        }
        Refusal::Forbidden(why) => {
            warn!(reason = %why, "{what}");
            Reject::warn(403, why)
        }
        Refusal::TooBrief(min) => Reject::new(423).with(other("Min-Expires", &min.to_string())),
        Refusal::Bad(why) => Reject::warn(400, why),
        Refusal::OutOfOrder => Reject::warn(
            500,
            "REGISTER out of order: an older CSeq than the binding's",
        ),
    }
}

fn options_response(req: &Request) -> Response {
    let mut resp = req.response(200, None).with_to_tag(&new_tag());
    advertise(&mut resp);
    resp.headers.push(accept_sdp());
    resp
}

/// The key of a DTMF INFO (`application/dtmf-relay`: `Signal=5`, or `application/dtmf`: `5`).
fn info_dtmf(req: &Request) -> Option<char> {
    let mime = req.headers.content_type()?.split(';').next()?.trim();
    let body = std::str::from_utf8(&req.body).ok()?;
    let signal = if mime.eq_ignore_ascii_case("application/dtmf-relay") {
        body.lines().find_map(|line| {
            let (key, value) = line.split_once('=')?;
            key.trim()
                .eq_ignore_ascii_case("signal")
                .then(|| value.trim())
        })?
    } else if mime.eq_ignore_ascii_case("application/dtmf") {
        body.trim()
    } else {
        return None;
    };
    let mut chars = signal.chars();
    let digit = chars.next()?.to_ascii_uppercase();
    (chars.next().is_none() && matches!(digit, '0'..='9' | '*' | '#' | 'A'..='D')).then_some(digit)
}

/// 420 for a Require option baton does not support (RFC 3261 §8.2.2.3).
fn check_require(req: &Request) -> Result<(), Reject> {
    if matches!(req.method, Method::Ack | Method::Cancel) {
        return Ok(());
    }
    let unsupported: Vec<String> = req
        .headers
        .require()
        .chain(req.headers.proxy_require())
        .filter(|t| !SUPPORTED.iter().any(|s| s.eq_ignore_ascii_case(t)))
        .map(str::to_string)
        .collect();
    if unsupported.is_empty() {
        Ok(())
    } else {
        Err(Reject::new(420).with(Header::Unsupported(unsupported)))
    }
}

fn warning(text: &str) -> Header {
    let clean: String = text
        .chars()
        .map(|c| if c == '"' || c.is_control() { '\'' } else { c })
        .collect();
    other("Warning", &format!("399 baton \"{clean}\""))
}

fn accept_sdp() -> Header {
    other("Accept", "application/sdp")
}

fn other(name: &str, value: &str) -> Header {
    Header::Other {
        name: name.to_string(),
        value: value.to_string(),
    }
}

fn host_string(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(content_type: &str, body: &str) -> Request {
        let text = format!(
            "INFO sip:baton@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.2;branch=z9hG4bK1\r\n\
             From: <sip:a@192.0.2.2>;tag=1\r\nTo: <sip:baton@192.0.2.1>;tag=2\r\nCall-ID: c\r\n\
             CSeq: 2 INFO\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        match text.parse::<Message>() {
            Ok(Message::Request(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn dtmf_keys_from_info_bodies() {
        assert_eq!(
            info_dtmf(&info(
                "application/dtmf-relay",
                "Signal=5\r\nDuration=160\r\n"
            )),
            Some('5')
        );
        assert_eq!(
            info_dtmf(&info("Application/DTMF-Relay", "signal = #\r\n")),
            Some('#')
        );
        assert_eq!(info_dtmf(&info("application/dtmf", "a")), Some('A'));
        assert_eq!(
            info_dtmf(&info("application/dtmf-relay", "Signal=55\r\n")),
            None
        );
        assert_eq!(
            info_dtmf(&info("application/dtmf-relay", "Duration=160\r\n")),
            None
        );
        assert_eq!(info_dtmf(&info("application/dtmf", "x")), None);
        assert_eq!(info_dtmf(&info("application/media_control+xml", "5")), None);
    }
}
