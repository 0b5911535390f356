//! Logging on: who may, with which credentials, and the session it opens.

use super::{ConnId, ConnLink, Hub, Identity, LogonOk, Session, random_token};
use crate::zello::protocol::{ErrorCode, Logon};
use crate::zello::sim::log::SimEvent;
use crate::zello::sim::{ECHO_USER, MAX_CHANNELS};
use std::collections::{BTreeSet, HashMap};

/// Refresh tokens remembered before the oldest are forgotten.
const MAX_REFRESH_TOKENS: usize = 10_000;

impl Hub<'_> {
    pub(super) fn authenticate(&self, conn: ConnId, req: &Logon) -> Result<Identity, ErrorCode> {
        let nonempty =
            |v: &Option<String>| v.as_deref().filter(|s| !s.is_empty()).map(str::to_owned);
        let username = nonempty(&req.username);
        let password = nonempty(&req.password);
        let auth_token = nonempty(&req.auth_token);
        let refresh_token = nonempty(&req.refresh_token);
        let accounts = self.sh.config.accounts.as_ref();

        let user = if let Some(token) = refresh_token {
            if self.sh.faults().refuse_refresh_tokens() {
                return Err(ErrorCode::NotAuthorized);
            }
            let owner = self
                .st
                .refresh_tokens
                .get(&token)
                .ok_or(ErrorCode::NotAuthorized)?;
            if username.as_ref().is_some_and(|u| u != owner) {
                return Err(ErrorCode::NotAuthorized);
            }
            owner.clone()
        } else {
            match (username, password) {
                (Some(user), Some(password)) => {
                    if let Some(accounts) = accounts
                        && accounts.check(&user, &password).is_none()
                    {
                        return Err(ErrorCode::NotAuthorized);
                    }
                    user
                }
                // Open server: a token stands in for the password.
                (Some(user), None) if auth_token.is_some() && accounts.is_none() => user,
                (Some(_), None) => return Err(ErrorCode::NotEnoughParams),
                (None, _) if auth_token.is_some() => {
                    if accounts.is_some() {
                        return Err(ErrorCode::NotAuthorized);
                    }
                    // Anonymous: listen-only, under a name of its own.
                    let channels = req.all_channels();
                    return Ok(Identity {
                        user: format!("anonymous-{conn}"),
                        listen_only: true,
                        allowed: channels,
                        denied: Vec::new(),
                    });
                }
                (None, _) => return Err(ErrorCode::NotEnoughParams),
            }
        };
        self.identity(user, req)
    }

    /// Who a user authenticated as is: the echo user's name is taken, an account's rights
    /// decide which channels it may join and whether it may talk.
    fn identity(&self, user: String, req: &Logon) -> Result<Identity, ErrorCode> {
        if self.echo_on() && user == ECHO_USER {
            return Err(ErrorCode::NotAuthorized);
        }
        let accounts = self.sh.config.accounts.as_ref();
        let channels = req.all_channels();
        let (listen_only, allowed, denied) = match accounts {
            Some(accounts) => {
                let account = accounts.get(&user).ok_or(ErrorCode::NotAuthorized)?;
                let (allowed, denied) = channels.into_iter().partition(|c| account.may_join(c));
                (account.listen_only, allowed, denied)
            }
            None => (false, channels, Vec::new()),
        };
        Ok(Identity {
            user,
            listen_only: listen_only || req.listen_only.unwrap_or(false),
            allowed,
            denied,
        })
    }

    /// Checks a logon and, if it is good, registers the session (kicking an older session of
    /// the same user). The caller answers and schedules [`Hub::join`].
    pub(crate) fn logon(&mut self, link: &ConnLink, req: &Logon) -> Result<LogonOk, ErrorCode> {
        let conn = link.info.id;
        let result = self.check_logon(conn, req);
        let id = match result {
            Ok(id) => id,
            Err(code) => {
                let user = req.username.clone().unwrap_or_else(|| link.info.label());
                tracing::info!(%user, error = %code, "logon refused");
                self.log(SimEvent::Logon {
                    user,
                    ok: false,
                    error: Some(code.clone()),
                });
                return Err(code);
            }
        };
        if let Some(&old) = self.st.by_user.get(&id.user)
            && old != conn
        {
            tracing::info!(user = %id.user, "newer logon of the same user: kicking the older session");
            self.kick_conn(old);
        }
        let _ = link.info.name.set(id.user.clone());
        self.st.sessions.insert(
            conn,
            Session {
                link: link.clone(),
                user: id.user.clone(),
                listen_only: id.listen_only,
                logon_channels: req.all_channels(),
                joined: BTreeSet::new(),
                last_status: HashMap::new(),
                frozen: false,
                overflowed: false,
            },
        );
        self.st.by_user.insert(id.user.clone(), conn);
        let token = random_token();
        if self.st.refresh_tokens.len() >= MAX_REFRESH_TOKENS {
            self.st.refresh_tokens.clear();
        }
        self.st
            .refresh_tokens
            .insert(token.clone(), id.user.clone());
        tracing::info!(user = %id.user, channels = ?id.allowed, listen_only = id.listen_only, "logon");
        self.log(SimEvent::Logon {
            user: id.user.clone(),
            ok: true,
            error: None,
        });
        Ok(LogonOk {
            user: id.user,
            refresh_token: token,
            allowed: id.allowed,
            denied: id.denied,
        })
    }

    pub(super) fn check_logon(&mut self, conn: ConnId, req: &Logon) -> Result<Identity, ErrorCode> {
        if let Some(code) = self.sh.faults().take_logon_refusal() {
            return Err(code);
        }
        let channels = req.all_channels();
        if channels.is_empty() || channels.iter().any(|c| c.trim().is_empty()) {
            return Err(ErrorCode::NotEnoughParams);
        }
        if channels.len() > MAX_CHANNELS {
            return Err(ErrorCode::ChannelsLimitExceeded);
        }
        self.authenticate(conn, req)
    }
}
