//! The bridge's side of the PTT line: the PTT thread's answers (keyed, unkeyed, a reading
//! of the transmitter's state) and the interface's health, one event per change.

use super::*;

impl Bridge {
    /// Follows the PTT interface's health (`fault`: why it failed, `None`: it works): one
    /// log line and one event per change.
    pub(super) fn ptt_health(&self, s: &mut State, fault: Option<String>) {
        match (fault, s.ptt_fault.is_some()) {
            (None, true) => {
                s.ptt_fault = None;
                info!(event = "ptt_interface_back", "PTT interface works again");
                self.observe(GatewayEvent::PttFault {
                    radio: self.name.clone(),
                    error: None,
                });
            }
            (Some(e), false) => {
                warn!(event = "ptt_interface_failed", error = %e,
                    "PTT interface failed: messages from the channel cannot be transmitted until it works again");
                s.ptt_fault = Some(e.clone());
                self.observe(GatewayEvent::PttFault {
                    radio: self.name.clone(),
                    error: Some(e),
                });
            }
            _ => {}
        }
    }

    /// Asks the PTT thread to read the state back; the reading comes back to the loop.
    pub(super) fn read_back(&mut self, s: &mut State) {
        let ticket = s.watch.reading();
        s.reading = Some((self.ptt.request(PttOp::Read), ticket));
    }

    /// An answer of the PTT thread.
    pub(super) async fn on_ptt(&mut self, s: &mut State, answer: PttAnswer) {
        let PttAnswer { id, op, result } = answer;
        match op {
            PttOp::Key => self.on_keyed(s, id, result.map(drop)).await,
            PttOp::Unkey => self.on_unkeyed(s, result),
            PttOp::Check => {
                if s.check_req == Some(id) {
                    s.check_req = None;
                    self.ptt_health(s, result.err().map(|e| e.to_string()));
                }
            }
            PttOp::Read => {
                if let Some((_, ticket)) = s.reading.take_if(|(asked, _)| *asked == id) {
                    self.on_reading(s, (ticket, result)).await;
                }
            }
        }
    }

    /// The answer to a keying: a transmission's, or the watch's keying again.
    pub(super) async fn on_keyed(
        &mut self,
        s: &mut State,
        id: u64,
        result: Result<(), RadioError>,
    ) {
        if let Some((_, at, first, unkeyed)) = s.rekey.take_if(|r| r.0 == id) {
            let outcome = ptt_watch::rekeyed(&mut s.watch, at, first, unkeyed, result);
            self.on_outcome(s, outcome).await;
            return;
        }
        if s.key_req != Some(id) {
            // The transmission ended while the line was being keyed: the unkeying asked
            // for since follows this answer.
            if let Err(e) = result {
                debug!(error = %e, "keying failed after the transmission had ended");
                self.ptt_health(s, Some(e.to_string()));
            }
            return;
        }
        s.key_req = None;
        match result {
            Ok(()) => {
                info!(event = "ptt_on", "PTT on");
                s.watch.keyed(Instant::now());
                self.ptt_health(s, None);
                self.engine(EngineCommand::Transmitting(true));
                s.encoding = false;
                self.observe(GatewayEvent::PttOn {
                    radio: self.name.clone(),
                });
                let deferred = std::mem::take(&mut s.deferred);
                self.apply(s, deferred).await;
            }
            Err(e) => {
                error!(event = "ptt_failed", error = %e, "cannot key the transmitter");
                self.ptt_health(s, Some(e.to_string()));
                s.deferred.clear();
                self.feed(s, Input::PttFailed).await;
            }
        }
    }

    /// Acts on a reading of the PTT state during a transmission: keys the transmitter again
    /// if it dropped, and gives the transmission up when that cannot be done. The machine's
    /// due timers run first, so a time-out that has passed ends the transmission before a
    /// reading could key it again.
    pub(super) async fn on_reading(&mut self, s: &mut State, reading: Reading) {
        let now = Instant::now();
        if s.m.next_deadline().is_some_and(|d| d <= now) {
            let actions = s.m.on_timer(now);
            self.apply(s, actions).await;
        }
        if !s.ptt_keyed {
            s.watch.unkeyed();
        }
        let outcome = match ptt_watch::judge(&mut s.watch, now, s.m.tot_ends(), reading) {
            Judged::Done(outcome) => outcome,
            Judged::Rekey { first, unkeyed } => {
                // Asked of the PTT thread: the outcome is known once it answers.
                s.rekey = Some((self.ptt.request(PttOp::Key), now, first, unkeyed));
                return;
            }
        };
        self.on_outcome(s, outcome).await;
    }

    /// Logs what a reading (and a keying again) came to, and gives the transmission up when
    /// the transmitter cannot be kept keyed.
    pub(super) async fn on_outcome(&mut self, s: &mut State, outcome: Outcome) {
        let stream_id = s.m.playing().unwrap_or(0);
        let lost = |unkeyed: std::time::Duration, what: &str| {
            warn!(
                event = "ptt_lost",
                unkeyed_ms = unkeyed.as_millis() as u64,
                "the transmitter was found unkeyed during a transmission (rigctld restarted?): {what}"
            );
        };
        let rekeyed = matches!(outcome, Outcome::Restored { .. });
        let give_up = message_span(stream_id).in_scope(|| match outcome {
            Outcome::Fine => None,
            Outcome::Unreadable { first, error } => {
                if first {
                    debug!(error = %error, "cannot read the PTT state back; trying again");
                }
                None
            }
            Outcome::Restored { first, unkeyed } if !first => {
                // Keyed again once more while no reading has found it keyed since the
                // loss was logged; the give-up timer keeps running.
                debug!(
                    unkeyed_ms = unkeyed.as_millis() as u64,
                    "transmitter still reads unkeyed; keyed again"
                );
                None
            }
            Outcome::Restored { unkeyed, .. } | Outcome::BackByItself { unkeyed } => {
                if rekeyed {
                    lost(unkeyed, "keying it again");
                }
                warn!(
                    event = "ptt_restored",
                    unkeyed_ms = unkeyed.as_millis() as u64,
                    "transmitter keyed again; it was unkeyed for up to {} ms",
                    unkeyed.as_millis()
                );
                None
            }
            Outcome::StillLost {
                first,
                unkeyed,
                error,
            } => {
                if first {
                    lost(unkeyed, &format!("cannot key it again yet ({error})"));
                }
                None
            }
            Outcome::Expired { unkeyed } => {
                lost(unkeyed, "past the time-out timer, so it stays unkeyed");
                None
            }
            Outcome::GiveUp { error } => {
                error!(event = "ptt_failed", error = %error,
                    "cannot keep the transmitter keyed: transmission stopped");
                Some(error)
            }
        });
        if let Some(error) = give_up {
            s.watch.unkeyed();
            self.ptt_health(s, Some(error));
            self.feed(s, Input::PttFailed).await;
        }
    }
}
