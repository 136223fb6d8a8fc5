//! Phase 3, planning: one job per (push, target), and the rows that need no send; and what an
//! earlier attempt left open that this plan does not cover.

use super::*;

impl<'m> Batch<'m> {
    /// Phase 3: one job per (push, target), the first when the batch repeats one; a user
    /// without live devices becomes a `no_devices` row, each target of a `cancelled` push a
    /// `cancelled` row, and each target of a push whose time has passed an `expired` row. `devices` holds what each (app, user) resolved to.
    pub fn plan(&mut self, devices: &Resolution, expiry: Expiry, cancelled: &HashSet<String>) {
        let mut jobs = Vec::new();
        let mut unsent = Vec::new();
        let mut no_devices = Vec::new();
        let mut stale: Vec<(String, usize)> = Vec::new();
        for (k, (i, e)) in self.envelopes.iter().enumerate() {
            let not_sent = if cancelled.contains(&e.id) {
                Some(DeliveryStatus::Cancelled)
            } else {
                expiry.has_passed(e).then_some(DeliveryStatus::Expired)
            };
            let mut add =
                |target: String, device: Option<(DeviceKind, String)>, user_id: Option<String>| {
                    if let Some(status) = not_sent {
                        unsent.push((*i, row(e, target, user_id, status, None, 0)));
                    } else {
                        jobs.push(Job {
                            message: *i,
                            envelope: k,
                            target,
                            device,
                            user_id,
                        });
                    }
                };
            let token = |t: &String| (t.clone(), Some((DeviceKind::Token, t.clone())));
            let fid = |f: &String| {
                (
                    DeviceKind::Fid.target(f),
                    Some((DeviceKind::Fid, f.clone())),
                )
            };
            match e.push.target() {
                Target::Token(t) => {
                    let (target, device) = token(t);
                    add(target, device, None);
                }
                Target::Tokens(ts) => ts.iter().for_each(|t| {
                    let (target, device) = token(t);
                    add(target, device, None);
                }),
                Target::Fid(f) => {
                    let (target, device) = fid(f);
                    add(target, device, None);
                }
                Target::Fids(fs) => fs.iter().for_each(|f| {
                    let (target, device) = fid(f);
                    add(target, device, None);
                }),
                Target::Topic(t) => add(format!("topic:{t}"), None, None),
                Target::Condition(c) => add(format!("condition:{c}"), None, None),
                Target::User(_) | Target::Users(_) => {
                    let app = e.push.app();
                    for u in user_ids(e) {
                        let key = (app.to_owned(), u.clone());
                        if let Some(n) = devices.stale.get(&key) {
                            stale.push((app.to_owned(), *n));
                        }
                        match devices.live.get(&key) {
                            Some(ds) => ds.iter().for_each(|d| {
                                add(
                                    d.kind.target(&d.token),
                                    Some((d.kind, d.token.clone())),
                                    Some(u.clone()),
                                )
                            }),
                            None => no_devices.push((
                                *i,
                                row(
                                    e,
                                    format!("user:{u}"),
                                    Some(u.clone()),
                                    DeliveryStatus::NoDevices,
                                    None,
                                    0,
                                ),
                            )),
                        }
                    }
                }
            }
        }
        self.jobs.extend(jobs);
        self.unsent.extend(unsent);
        self.unsent.extend(no_devices);
        for (app, n) in stale {
            self.counts.stale_devices += n;
            self.app(&app).stale_devices += n;
        }
    }

    /// The pushes naming users that the queue may have delivered before (a later receive, a
    /// redrive): their earlier attempts may have left rows this one will not write.
    pub fn seen_user_pushes(&self) -> Vec<String> {
        unique(
            self.envelopes
                .iter()
                .filter(|(i, e)| self.messages[*i].maybe_seen_before() && !user_ids(e).is_empty())
                .map(|(_, e)| e.id.clone()),
        )
    }

    /// Phase 3b: the rows an earlier attempt left open (`open`: push id, target, user id) that
    /// this plan does not cover can no longer become final, so that `waitFor` would never end.
    /// A device row (the device was unregistered, went stale or moved to another user since) is
    /// closed `failed` with `DEVICE_GONE`, through the same claim as the rest; a `user:<id>`
    /// trace whose user now has devices is deleted once their rows are written.
    pub fn close_unplanned(&mut self, open: Vec<(String, String, String)>) {
        let planned: HashSet<(&str, &str)> = self
            .jobs
            .iter()
            .map(|j| (self.envelopes[j.envelope].1.id.as_str(), j.target.as_str()))
            .chain(
                self.unsent
                    .iter()
                    .map(|(_, r)| (r.push_id.as_str(), r.target.as_str())),
            )
            .collect();
        let unplanned: Vec<(String, String, String)> = open
            .into_iter()
            .filter(|(p, t, _)| !planned.contains(&(p.as_str(), t.as_str())))
            .collect();
        let by_id: HashMap<&str, (usize, &Envelope)> = self
            .envelopes
            .iter()
            .map(|(i, e)| (e.id.as_str(), (*i, e)))
            .collect();
        let mut closing = Vec::new();
        for (push_id, target, user_id) in unplanned {
            let Some(&(i, e)) = by_id.get(push_id.as_str()) else {
                continue;
            };
            if target.starts_with("user:") {
                self.superseded.push((push_id, target));
                continue;
            }
            closing.push((
                i,
                row(
                    e,
                    target,
                    Some(user_id),
                    DeliveryStatus::Failed,
                    Some(DEVICE_GONE.to_owned()),
                    0,
                ),
            ));
        }
        self.unsent.extend(closing);
    }
}
