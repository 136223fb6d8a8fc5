//! Phase 3, planning: one target per (push, target) the batch's pushes name, either to send or
//! to record without a send; and what an earlier attempt left open that this plan does not cover.

use super::*;
use crate::store::Resolution;

impl<'m> Batch<'m> {
    /// Phase 3: one target per (push, device or topic), in the order the pushes name them. A
    /// user without live devices is a `no_devices` row; every target of a `cancelled` push a
    /// `cancelled` row, of a push whose time has passed an `expired` row, of a push over FCM's
    /// payload limit a `failed` row (`PAYLOAD_TOO_LARGE`). `devices` holds what each (app, user)
    /// resolved to.
    pub fn plan(&mut self, devices: &Resolution, expiry: Expiry, cancelled: &HashSet<String>) {
        let mut planned = Vec::new();
        for (p, e) in self.sendable() {
            let unsent = unsent_status(e, expiry, cancelled);
            if let Some(job) = unreadable_page(p, e, devices) {
                planned.push(job);
                continue;
            }
            for (target, device, user_id) in self.push_targets(e, devices) {
                let state = match (&device, &user_id, &unsent) {
                    // A user without live devices: the `user:<id>` row says so.
                    (None, Some(_), _) => State::ToRecord(DeliveryStatus::NoDevices, None),
                    (_, _, Some((status, error))) => State::ToRecord(*status, error.clone()),
                    _ => State::ToSend,
                };
                planned.push(TargetJob {
                    push: p,
                    key: TargetKey::new(&e.id, target),
                    device,
                    user_id,
                    taken_over: false,
                    state,
                });
            }
        }
        self.targets.extend(planned);
        self.supersede_page_traces();
        self.count_stale(devices);
    }

    /// A page of an audience push that comes again may have been handed back by a consumer
    /// without the app's key, which recorded its `audience:<audience>` trace `retrying`: that
    /// trace goes once this page's rows are written (only while `retrying`).
    fn supersede_page_traces(&mut self) {
        let traces: Vec<TargetKey> = self
            .sendable()
            .filter(|(p, e)| {
                e.page.is_some() && self.messages[self.pushes[*p].message].maybe_seen_before()
            })
            .filter_map(|(_, e)| match e.push.target() {
                Target::Audience(a) => {
                    Some(TargetKey::new(&e.id, format!("audience:{}", a.summary())))
                }
                _ => None,
            })
            .collect();
        self.superseded.extend(traces);
    }

    /// Counts, per app, the stale devices each push's users have (a user named by two pushes
    /// counts twice: the count is of devices a push left out).
    fn count_stale(&mut self, devices: &Resolution) {
        let mut stale = Vec::new();
        for (_, e) in self.sendable() {
            for u in user_ids(e) {
                let key = (e.push.app().to_owned(), u.clone());
                if let Some(n) = devices.stale.get(&key) {
                    stale.push((key.0, *n));
                }
            }
        }
        for (_, e) in self.sendable() {
            let Some(page) = e.page else { continue };
            if let Some(resolved) = devices.pages.get(&(e.id.clone(), page)) {
                stale.push((e.push.app().to_owned(), resolved.stale));
            }
        }
        for (app, n) in stale {
            *self.stale_devices.entry(app).or_default() += n;
        }
    }

    /// The targets `e` names, users resolved to their devices: (target, device, user id). A
    /// user without live devices is one `user:<id>` target without a device.
    fn push_targets(
        &self,
        e: &Envelope,
        devices: &Resolution,
    ) -> Vec<(String, Option<Device>, Option<String>)> {
        let device =
            |kind: DeviceKind, id: &String| (kind.target(id), Some((kind, id.clone())), None);
        match e.push.target() {
            Target::Token(t) => vec![device(DeviceKind::Token, t)],
            Target::Tokens(ts) => ts.iter().map(|t| device(DeviceKind::Token, t)).collect(),
            Target::Fid(f) => vec![device(DeviceKind::Fid, f)],
            Target::Fids(fs) => fs.iter().map(|f| device(DeviceKind::Fid, f)).collect(),
            Target::Topic(t) => vec![(format!("topic:{t}"), None, None)],
            Target::Condition(c) => vec![(format!("condition:{c}"), None, None)],
            Target::User(_) | Target::Users(_) => user_ids(e)
                .iter()
                .flat_map(|u| {
                    let key = (e.push.app().to_owned(), u.clone());
                    match devices.live.get(&key) {
                        Some(ds) => ds
                            .iter()
                            .map(|d| {
                                let device = Some((d.kind, d.token.clone()));
                                (d.kind.target(&d.token), device, Some(u.clone()))
                            })
                            .collect(),
                        None => vec![(format!("user:{u}"), None, Some(u.clone()))],
                    }
                })
                .collect(),
            // A page: its devices as resolved now (none: nothing to record). The push itself
            // (no page) is expanded, never planned.
            Target::Audience(_) => e
                .page
                .and_then(|page| devices.pages.get(&(e.id.clone(), page)))
                .map(|page| {
                    page.live
                        .iter()
                        .map(|(user, d)| {
                            let device = Some((d.kind, d.token.clone()));
                            (d.kind.target(&d.token), device, Some(user.clone()))
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// The pushes naming users that the queue may have delivered before (a later receive, a
    /// redrive), or whose earlier attempt may have deferred some users (a push with `sendAt`:
    /// a deferred copy is one): their earlier attempts may have left rows this one will not
    /// write.
    pub fn seen_user_pushes(&self) -> Vec<String> {
        unique(
            self.sendable()
                .filter(|(p, e)| {
                    (self.messages[self.pushes[*p].message].maybe_seen_before()
                        || e.push.send_at_ms().is_some())
                        && !user_ids(e).is_empty()
                })
                .map(|(_, e)| e.id.clone()),
        )
    }

    /// The user ids the batch's copies of these pushes name, once each.
    pub fn users_of(&self, push_ids: &[String]) -> Vec<String> {
        let wanted: HashSet<&str> = push_ids.iter().map(String::as_str).collect();
        unique(
            self.sendable()
                .filter(|(_, e)| wanted.contains(e.id.as_str()))
                .flat_map(|(_, e)| user_ids(e).iter().cloned()),
        )
    }

    /// Phase 3b: the rows an earlier attempt left open (`open`: push id, target, user id) that
    /// this plan does not cover can no longer become final, so that `waitFor` would never end.
    /// A device row (the device was unregistered, went stale or moved to another user since) is
    /// closed `failed` with `DEVICE_GONE`, through the same claim as the rest; a `user:<id>`
    /// trace whose user now has devices is deleted once their rows are written.
    pub fn close_unplanned(&mut self, open: Vec<(String, String, String)>) {
        // Only the rows of users this batch's copies name: another part of a split push, or
        // a deferral of other users, owns the rest.
        let named: HashSet<(String, String)> = self
            .sendable()
            .flat_map(|(_, e)| user_ids(e).iter().map(|u| (e.id.clone(), u.clone())))
            .collect();
        let open = open
            .into_iter()
            .filter(|(push_id, _, user_id)| named.contains(&(push_id.clone(), user_id.clone())));
        self.close_open(open.collect());
    }

    /// The devices of this batch's redelivered audience pages that are gone now (invalidated,
    /// or stale): (push id, user id, target). Rows an earlier attempt left open for them would
    /// never become final.
    pub fn gone_page_devices(&self, devices: &Resolution) -> Vec<(String, String, String)> {
        let mut gone = Vec::new();
        for (p, e) in self.sendable() {
            let Some(page) = e.page else { continue };
            if !self.messages[self.pushes[p].message].maybe_seen_before() {
                continue;
            }
            let Some(resolved) = devices.pages.get(&(e.id.clone(), page)) else {
                continue;
            };
            for (user, target) in &resolved.gone {
                gone.push((e.id.clone(), user.clone(), target.clone()));
            }
        }
        gone
    }

    /// Phase 3b for pages: of the open rows (push id, target, user id) read for the gone
    /// devices, those of a gone device are closed `failed` `DEVICE_GONE`.
    pub fn close_gone_page_rows(
        &mut self,
        open: Vec<(String, String, String)>,
        gone: &[(String, String, String)],
    ) {
        let gone: HashSet<(&str, &str)> = gone
            .iter()
            .map(|(push, _, target)| (push.as_str(), target.as_str()))
            .collect();
        let open = open
            .into_iter()
            .filter(|(push, target, _)| gone.contains(&(push.as_str(), target.as_str())))
            .collect();
        self.close_open(open);
    }

    /// Closes open rows this plan does not cover: a device row `failed` `DEVICE_GONE` (through
    /// the same claim as the rest); a `user:<id>` trace is deleted once the log is written.
    fn close_open(&mut self, open: Vec<(String, String, String)>) {
        let planned: HashSet<TargetKey> = self.targets.iter().map(|t| t.key.clone()).collect();
        let by_id: HashMap<String, usize> =
            self.sendable().map(|(p, e)| (e.id.clone(), p)).collect();
        let mut closing = Vec::new();
        for (push_id, target, user_id) in open {
            let key = TargetKey::new(push_id, target);
            let Some(&p) = by_id.get(&key.push_id) else {
                continue;
            };
            if planned.contains(&key) {
                continue;
            }
            if key.target.starts_with("user:") {
                self.superseded.push(key);
                continue;
            }
            closing.push(TargetJob {
                push: p,
                key,
                device: None,
                user_id: Some(user_id),
                taken_over: false,
                state: State::ToRecord(DeliveryStatus::Failed, Some(DEVICE_GONE.to_owned())),
            });
        }
        self.targets.extend(closing);
    }
}

/// For an audience page whose segment can no longer be read (its view was dropped since the
/// expansion): one target, `audience:segment:<name>`, recorded `failed` `UNKNOWN_SEGMENT`.
fn unreadable_page(p: usize, e: &Envelope, devices: &Resolution) -> Option<TargetJob> {
    let (Target::Audience(audience), Some(page)) = (e.push.target(), e.page) else {
        return None;
    };
    let resolved = devices.pages.get(&(e.id.clone(), page))?;
    resolved.segment_missing.then(|| TargetJob {
        push: p,
        key: TargetKey::new(&e.id, format!("audience:{}", audience.summary())),
        device: None,
        user_id: None,
        taken_over: false,
        state: State::ToRecord(
            DeliveryStatus::Failed,
            Some(crate::engine::UNKNOWN_SEGMENT.to_owned()),
        ),
    })
}

/// Why every target of `e` is recorded without a send, if one is: the push was cancelled, its
/// time has passed, or its payload is over FCM's limit (4096 bytes, 2048 for a topic: a producer
/// that is not pushq's may have enqueued it).
fn unsent_status(
    e: &Envelope,
    expiry: Expiry,
    cancelled: &HashSet<String>,
) -> Option<(DeliveryStatus, Option<String>)> {
    if cancelled.contains(&e.id) {
        return Some((DeliveryStatus::Cancelled, None));
    }
    if expiry.has_passed(e) {
        return Some((DeliveryStatus::Expired, None));
    }
    let (size, limit) = (e.push.payload_size(), e.push.payload_limit());
    if size > limit {
        tracing::warn!(push_id = %e.id, size, limit, "the FCM payload is over FCM's limit; recorded failed, not sent");
        return Some((DeliveryStatus::Failed, Some(PAYLOAD_TOO_LARGE.to_owned())));
    }
    None
}
