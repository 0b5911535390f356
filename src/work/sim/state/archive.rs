//! The emulated archive calls: message history, media conversions and locations.

use super::*;

impl WorkState {
    pub(super) fn metadata(&self, req: &Request) -> Answer {
        let b = &req.body;
        let via_channel = b.get("via_channel").filter(|c| !c.is_empty());
        let is_channel = if via_channel.is_some() {
            Some(true)
        } else {
            truthy(b.get("is_channel"))
        };
        let (start_ts, end_ts) = (number(b.get("start_ts"))?, number(b.get("end_ts"))?);
        let (start_id, end_id) = (number(b.get("start_id"))?, number(b.get("end_id"))?);
        let call_id = number(b.get("call_id"))?;
        let text = b.get("text").map(str::to_lowercase);
        let mut found: Vec<&Message> = self
            .data
            .messages
            .iter()
            .filter(|m| b.get("sender").is_none_or(|s| m.sender == s))
            .filter(|m| {
                b.get("recipient").is_none_or(|r| {
                    m.recipient == r
                        || m.channel_users
                            .as_ref()
                            .is_some_and(|u| u.iter().any(|u| u == r))
                })
            })
            .filter(|m| via_channel.is_none_or(|c| m.recipient == c))
            .filter(|m| is_channel.is_none_or(|c| (m.recipient_type == "channel") == c))
            .filter(|m| b.get("type").is_none_or(|t| m.kind == t))
            .filter(|m| {
                text.as_ref().is_none_or(|t| {
                    m.text
                        .as_ref()
                        .is_some_and(|x| x.to_lowercase().contains(t))
                })
            })
            .filter(|m| b.get("eid").is_none_or(|e| m.eid.as_deref() == Some(e)))
            .filter(|m| call_id.is_none_or(|c| m.call_id == Some(c)))
            .filter(|m| start_ts.is_none_or(|t| m.ts >= t))
            .filter(|m| end_ts.is_none_or(|t| m.ts <= t))
            .filter(|m| start_id.is_none_or(|i| m.id >= i))
            .filter(|m| end_id.is_none_or(|i| m.id <= i))
            .collect();
        let sort = b.get("sort").unwrap_or("id");
        let key = |m: &Message| -> Value {
            serde_json::to_value(m)
                .ok()
                .and_then(|v| v.get(sort).cloned())
                .unwrap_or(Value::Null)
        };
        found.sort_by(|x, y| {
            let (a, b) = (key(x), key(y));
            let by_value = match (a.as_f64(), b.as_f64()) {
                (Some(a), Some(b)) => a.total_cmp(&b),
                _ => a.to_string().cmp(&b.to_string()),
            };
            by_value.then(x.id.cmp(&y.id))
        });
        if b.get("sort_order") != Some("asc") {
            found.reverse();
        }
        let total = found.len();
        let messages = page(
            found,
            number(b.get("start"))?,
            Some(number(b.get("max"))?.unwrap_or(100)),
        );
        ok(json!({ "total": total, "returned": messages.len(), "messages": messages }))
    }

    pub(super) fn media(
        &mut self,
        req: &Request,
    ) -> Result<(Map<String, Value>, Conversion), ApiFailure> {
        let key = req.path_params().remove("key").ok_or(MISSING)?;
        let media = self.data.media.get(&key).ok_or(NOT_FOUND)?;
        let polls = self.conversions.entry(key.clone()).or_insert(0);
        *polls += 1;
        let steps = self.media_steps;
        let conversion = if *polls > steps {
            Conversion::Ready
        } else if *polls == 1 && steps > 1 {
            Conversion::Waiting(0)
        } else {
            Conversion::Working(u64::from(*polls) * 100 / u64::from(steps + 1))
        };
        let answer = match conversion {
            Conversion::Ready => json!({
                "type": media.kind,
                "url": format!("{}/media/{key}.{}", self.media_base, media.ext),
                "expires": 0,
            }),
            Conversion::Waiting(p) => {
                json!({ "status": "Waiting", "type": media.kind, "progress": p })
            }
            Conversion::Working(p) => {
                json!({ "status": "Working", "type": media.kind, "progress": p })
            }
        };
        Ok((ok(answer)?, conversion))
    }

    /// The file of a media key, once its conversion is done.
    pub fn media_file(&self, file: &str) -> Option<(&SimMedia, &'static str)> {
        let (key, ext) = file.rsplit_once('.')?;
        let media = self.data.media.get(key).filter(|m| m.ext == ext)?;
        let ready = self
            .conversions
            .get(key)
            .is_some_and(|polls| *polls > self.media_steps);
        let content_type = match ext {
            "wav" => "audio/wav",
            "png" => "image/png",
            "jpg" => "image/jpeg",
            "mp3" => "audio/mpeg",
            _ => "application/octet-stream",
        };
        ready.then_some((media, content_type))
    }

    pub(super) fn latest_reports(&self) -> Vec<&SimReport> {
        let mut latest: BTreeMap<&str, &SimReport> = BTreeMap::new();
        for r in &self.data.reports {
            if latest.get(r.user.as_str()).is_none_or(|l| l.ts <= r.ts) {
                latest.insert(&r.user, r);
            }
        }
        latest.into_values().collect()
    }

    pub(super) fn locations(&self, req: &Request, now: u64) -> Answer {
        let q = &req.query;
        let corner = |name: &str| -> Result<Option<(f64, f64)>, ApiFailure> {
            match q.all(name).as_slice() {
                [] => Ok(None),
                [lat, lon] => Ok(Some((
                    float(Some(lat))?.ok_or(ApiFailure(400))?,
                    float(Some(lon))?.ok_or(ApiFailure(400))?,
                ))),
                _ => Err(ApiFailure(400)),
            }
        };
        let (ne, sw) = (corner("northeast")?, corner("southwest")?);
        let inside = |r: &SimReport| match (ne, sw) {
            (Some((n, e)), Some((s, w))) => {
                (s..=n).contains(&r.latitude) && (w..=e).contains(&r.longitude)
            }
            _ => true,
        };
        let active = |r: &SimReport| now.saturating_sub(r.ts) <= 20 * 60;
        let name = q.get("name").map(str::to_lowercase);
        let filter = q.get("filter").unwrap_or_default();
        let found: Vec<Value> = self
            .latest_reports()
            .into_iter()
            .filter(|r| match filter {
                "none" => true,
                "active" => active(r),
                _ => active(r) && inside(r),
            })
            .filter_map(|r| {
                let user = self.data.users.get(&r.user);
                let display = user.map(|u| u.full_name.clone()).unwrap_or_default();
                if let Some(n) = &name
                    && !r.user.to_lowercase().contains(n)
                    && !display.to_lowercase().contains(n)
                {
                    return None;
                }
                let l = Location {
                    username: Some(r.user.clone()),
                    display_name: Some(display),
                    visible: Some(inside(r)),
                    status: Some(if active(r) { "online" } else { "standby" }.into()),
                    geo_tracking_disabled: Some(false),
                    last_report_delay: Some(now.saturating_sub(r.ts)),
                    signal_strength: Some(0.5),
                    charging_status: Some(0),
                    id: None,
                    ..report_location(r, 1.0)
                };
                serde_json::to_value(l).ok()
            })
            .collect();
        let total = found.len();
        let list = page(found, number(q.get("start"))?, number(q.get("max"))?);
        ok(json!({ "total": total, "returned": list.len(), "locations": list }))
    }

    pub(super) fn user_locations(&self, req: &Request) -> Answer {
        let rest = req.rest();
        let user = rest.first().ok_or(MISSING)?;
        if !self.data.users.contains_key(user) {
            return Err(NOT_FOUND);
        }
        let history = rest.get(1).is_some_and(|s| s == "history");
        let q = &req.query;
        let factor = match q.get("speedUnits") {
            Some("mph") => 0.621_371,
            None | Some("kmh") => 1.0,
            Some(_) => return Err(ApiFailure(400)),
        };
        let reports: Vec<&SimReport> = if history {
            let (from, to) = (number(q.get("start_ts"))?, number(q.get("end_ts"))?);
            self.data
                .reports
                .iter()
                .filter(|r| &r.user == user)
                .filter(|r| from.is_none_or(|t| r.ts >= t) && to.is_none_or(|t| r.ts <= t))
                .collect()
        } else {
            self.latest_reports()
                .into_iter()
                .filter(|r| &r.user == user)
                .collect()
        };
        let total = reports.len();
        let reports = page(reports, number(q.get("start"))?, number(q.get("max"))?);
        let returned = reports.len();
        let locations = if history && q.get("format") == Some("geojson") {
            let features: Vec<Value> = reports
                .iter()
                .map(|r| {
                    json!({
                        "type": "Feature",
                        "geometry": { "type": "Point", "coordinates": [r.longitude, r.latitude, r.altitude] },
                        "properties": serde_json::to_value(report_location(r, factor)).unwrap_or(Value::Null),
                    })
                })
                .collect();
            json!({ "type": "FeatureCollection", "features": features })
        } else {
            serde_json::to_value(
                reports
                    .iter()
                    .map(|r| report_location(r, factor))
                    .collect::<Vec<_>>(),
            )
            .unwrap_or(Value::Null)
        };
        ok(json!({ "total": total, "returned": returned, "locations": locations }))
    }
}

/// The fields of a report `location/getuser` gives, speed multiplied by `factor`.
fn report_location(r: &SimReport, factor: f64) -> Location {
    Location {
        latitude: Some(r.latitude),
        longitude: Some(r.longitude),
        speed: Some(r.speed_kmh * factor),
        heading: Some(r.heading),
        altitude: Some(r.altitude),
        battery_level: Some(r.battery),
        accuracy: Some(r.accuracy),
        last_report: Some(r.ts),
        id: Some(r.id.clone()),
        ..Location::default()
    }
}
