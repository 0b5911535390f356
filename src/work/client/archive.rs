//! The archive calls: message history, media downloads and locations.

use super::*;

impl WorkClient {
    // ---- History ----

    /// `history/getmetadata` (a POST that only reads).
    pub async fn metadata(&self, q: &MetadataQuery) -> Result<Metadata, WorkError> {
        let body = Form::new()
            .opt("sender", q.sender.as_ref())
            .opt("recipient", q.recipient.as_ref())
            .opt("via_channel", q.via_channel.as_ref())
            .opt_bool("is_channel", q.is_channel)
            .opt("type", q.media_type.map(|t| t.as_str()))
            .opt("text", q.text.as_ref())
            .opt("eid", q.eid.as_ref())
            .opt("call_id", q.call_id)
            .opt("start_ts", q.start_ts)
            .opt("end_ts", q.end_ts)
            .opt("start_id", q.start_id)
            .opt("end_id", q.end_id)
            .opt("max", q.max)
            .opt("start", q.start)
            .opt("sort", q.sort.as_ref())
            .opt(
                "sort_order",
                q.sort_order.map(|o| match o {
                    SortOrder::Asc => "asc",
                    SortOrder::Desc => "desc",
                }),
            );
        let mut call = self.write(
            "history/getmetadata",
            "history/getmetadata".into(),
            Some(body),
        );
        call.kind = Kind::Read;
        self.typed(call).await
    }

    async fn media_poll(&self, key: &str) -> Result<MediaStatus, Attempt> {
        let mut call = self.read(
            "history/getmedia",
            format!("history/getmedia/key/{}", path_segment(key)),
        );
        call.timeout = self.options.media_poll_timeout;
        let value = self.attempt(&call).await?;
        let a: MediaAnswer = serde_json::from_value(value).map_err(|e| {
            Attempt::Done(WorkError::BadResponse {
                method: "history/getmedia",
                message: e.to_string(),
            })
        })?;
        let progress = a.progress.unwrap_or(0);
        match a.status.to_ascii_lowercase().as_str() {
            "waiting" => Ok(MediaStatus::Waiting { progress }),
            "working" => Ok(MediaStatus::Working { progress }),
            _ => match a.url {
                Some(url) if !url.is_empty() => Ok(MediaStatus::Ready(MediaReady {
                    kind: a.kind,
                    url,
                    expires: a.expires,
                })),
                _ => Err(Attempt::Done(WorkError::BadResponse {
                    method: "history/getmedia",
                    message: format!("status {:?} without a URL", a.status),
                })),
            },
        }
    }

    /// `history/getmedia`, once: the media's URL, or how far its conversion is.
    pub async fn media_status(&self, key: &str) -> Result<MediaStatus, WorkError> {
        match self.media_poll(key).await {
            Ok(s) => Ok(s),
            Err(Attempt::Done(e)) => Err(e),
            Err(Attempt::Network {
                message, delivery, ..
            }) => Err(WorkError::Network {
                method: "history/getmedia",
                message,
                delivery,
                write: false,
            }),
        }
    }

    /// `history/getmedia` as a long-poll: repeats while the server is converting (telling
    /// `progress`) or when a poll times out, retries network failures with backoff, and
    /// returns once the media is ready.
    pub async fn media(
        &self,
        key: &str,
        mut progress: impl FnMut(MediaProgress),
    ) -> Result<MediaReady, WorkError> {
        let start = Instant::now();
        let mut backoff = Backoff::new(self.options.backoff_min, self.options.backoff_max);
        loop {
            if start.elapsed() > self.options.media_wait {
                return Err(WorkError::MediaTimeout {
                    key: key.to_string(),
                    waited_s: start.elapsed().as_secs(),
                });
            }
            let polled = Instant::now();
            match self.media_poll(key).await {
                Ok(MediaStatus::Ready(ready)) => return Ok(ready),
                Ok(MediaStatus::Waiting { progress: p }) => progress(MediaProgress::Waiting(p)),
                Ok(MediaStatus::Working { progress: p }) => progress(MediaProgress::Working(p)),
                Err(Attempt::Done(e)) => return Err(e),
                Err(Attempt::Network { timeout: true, .. }) => {
                    progress(MediaProgress::Repolling);
                    continue;
                }
                Err(Attempt::Network {
                    message, delivery, ..
                }) => {
                    if backoff.attempts() >= self.options.retries {
                        return Err(WorkError::Network {
                            method: "history/getmedia",
                            message,
                            delivery,
                            write: false,
                        });
                    }
                    let pause = backoff.next_delay(fastrand::f64());
                    tracing::warn!(
                        method = "history/getmedia",
                        "{message}; retrying in {:.1} s",
                        pause.as_secs_f64()
                    );
                    tokio::time::sleep(pause).await;
                    continue;
                }
            }
            // A quick answer that is not ready: do not poll faster than the interval.
            tokio::time::sleep_until(polled + self.options.media_poll_interval).await;
        }
    }

    /// Downloads ready media from `url` (relative URLs are taken from the network's) to
    /// `dest`, reporting (bytes so far, total when known). Written to `dest.part` first.
    /// Returns the size. No session id is sent.
    pub async fn download(
        &self,
        url: &str,
        dest: &Path,
        mut progress: impl FnMut(u64, Option<u64>),
    ) -> Result<u64, WorkError> {
        const METHOD: &str = "media download";
        let url = self.base.join(url).map_err(|e| WorkError::BadUrl {
            url: url.to_string(),
            message: e.to_string(),
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(WorkError::BadUrl {
                url: url.to_string(),
                message: "not an http(s) URL".into(),
            });
        }
        let part = dest.with_extension(match dest.extension() {
            Some(ext) => format!("{}.part", ext.to_string_lossy()),
            None => "part".into(),
        });
        let write_err = |source| WorkError::Write {
            path: part.display().to_string(),
            source,
        };
        let mut backoff = Backoff::new(self.options.backoff_min, self.options.backoff_max);
        loop {
            let failure = match self.download_once(&url, &part, &mut progress).await {
                Ok(Ok(n)) => {
                    tokio::fs::rename(&part, dest).await.map_err(write_err)?;
                    return Ok(n);
                }
                Ok(Err(e)) => return Err(e),
                Err(e) => describe(e),
            };
            if backoff.attempts() >= self.options.retries {
                let _ = tokio::fs::remove_file(&part).await;
                return Err(WorkError::Network {
                    method: METHOD,
                    message: failure,
                    delivery: Delivery::MaybeSent,
                    write: false,
                });
            }
            let pause = backoff.next_delay(fastrand::f64());
            tracing::warn!(
                "{METHOD}: {failure}; retrying in {:.1} s",
                pause.as_secs_f64()
            );
            tokio::time::sleep(pause).await;
        }
    }

    /// One download attempt: `Err` for a network failure worth retrying.
    async fn download_once(
        &self,
        url: &url::Url,
        part: &Path,
        progress: &mut impl FnMut(u64, Option<u64>),
    ) -> Result<Result<u64, WorkError>, reqwest::Error> {
        let mut response = self
            .http
            .get(url.clone())
            .timeout(self.options.media_poll_timeout.max(self.options.timeout) * 4)
            .send()
            .await?;
        let status = response.status();
        if !status.is_success() {
            return Ok(Err(WorkError::Http {
                method: "media download",
                status: status.as_u16(),
            }));
        }
        let total = response.content_length();
        let write_err = |source| WorkError::Write {
            path: part.display().to_string(),
            source,
        };
        let mut file = match tokio::fs::File::create(part).await {
            Ok(f) => f,
            Err(e) => return Ok(Err(write_err(e))),
        };
        let mut n = 0u64;
        progress(0, total);
        while let Some(chunk) = response.chunk().await? {
            if let Err(e) = file.write_all(&chunk).await {
                return Ok(Err(write_err(e)));
            }
            n += chunk.len() as u64;
            progress(n, total);
        }
        if let Err(e) = file.flush().await {
            return Ok(Err(write_err(e)));
        }
        Ok(Ok(n))
    }

    // ---- Locations ----

    /// `location/get`: the last locations of users.
    pub async fn locations(&self, q: &LocationQuery) -> Result<Locations, WorkError> {
        let mut query = Form::new();
        if let Some((lat, lon)) = q.northeast {
            query = query.list("northeast", &[lat.to_string(), lon.to_string()]);
        }
        if let Some((lat, lon)) = q.southwest {
            query = query.list("southwest", &[lat.to_string(), lon.to_string()]);
        }
        query = query
            .opt("name", q.name.as_ref())
            .opt("filter", q.filter.map(LocationFilter::as_str))
            .opt("start", q.start)
            .opt("max", q.max);
        let mut call = self.read("location/get", "location/get".into());
        call.query = query;
        self.typed(call).await
    }

    fn user_location_call(&self, username: &str, q: &UserLocationQuery, geojson: bool) -> Call {
        let mut path = format!("location/getuser/{}", path_segment(username));
        if q.history || geojson {
            path += "/history";
        }
        let mut call = self.read("location/getuser", path);
        call.query = Form::new()
            .opt("start_ts", q.start_ts)
            .opt("end_ts", q.end_ts)
            .opt("format", geojson.then_some("geojson"))
            .opt("speedUnits", q.speed_units.map(SpeedUnits::as_str))
            .opt("start", q.start)
            .opt("max", q.max);
        call
    }

    /// `location/getuser`: a user's last location, or their history.
    pub async fn user_locations(
        &self,
        username: &str,
        q: &UserLocationQuery,
    ) -> Result<Locations, WorkError> {
        self.typed(self.user_location_call(username, q, false))
            .await
    }

    /// `location/getuser/.../history` with `format=geojson`: the whole answer, whose
    /// locations are a GeoJSON feature collection.
    pub async fn user_locations_geojson(
        &self,
        username: &str,
        q: &UserLocationQuery,
    ) -> Result<serde_json::Value, WorkError> {
        self.call(self.user_location_call(username, q, true)).await
    }
}
