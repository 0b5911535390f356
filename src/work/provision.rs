//! `zello-gateway provision`: sets the gateway up on a Zello Work network. Its account
//! becomes a gateway account with the configured password, the configured channels are
//! created when missing, the account is added to each, and optionally given a channel role.
//!
//! The plan is computed from what the network holds ([`plan`], free of I/O) and only what
//! is missing is done, so a second run changes nothing; `--dry-run` prints the plan alone.

use super::admin::{Admin, AdminError};
use super::client::{ClientOptions, WorkClient};
use super::error::{ApiCode, WorkError};
use super::types::{ChannelQuery, NewChannel, UserQuery, UserSave};
use crate::config::{Config, ConfigError};
use crate::secret::Secret;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

/// Options of `zello-gateway provision`.
#[derive(clap::Args, Debug, Clone)]
pub struct ProvisionArgs {
    /// The admin file (TOML: url, username, password or password_file, api_key or
    /// api_key_file). ZELLO_WORK_URL, ZELLO_ADMIN_USERNAME, ZELLO_ADMIN_PASSWORD and
    /// ZELLO_API_KEY override it, and may replace it.
    #[arg(long)]
    pub admin: Option<PathBuf>,
    /// Print what would be done and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Give the gateway this channel role in each of its channels (the role must exist).
    #[arg(long)]
    pub role: Option<String>,
    /// Also set the password of an account that exists already to the configured one
    /// (a new account always gets it).
    #[arg(long)]
    pub reset_password: bool,
}

/// What the configuration asks for.
#[derive(Debug, Clone)]
pub struct Desired {
    /// The gateway's username.
    pub username: String,
    /// Its password.
    pub password: Secret,
    /// Its channels, in the configuration's order.
    pub channels: Vec<String>,
    /// A role to give it in each channel.
    pub role: Option<String>,
    /// Set the password even when the account exists.
    pub reset_password: bool,
}

impl Desired {
    /// The gateway's account and channels from its configuration.
    pub fn from_config(
        config: &Config,
        role: Option<String>,
        reset_password: bool,
    ) -> Result<Desired, ProvisionError> {
        if config.zello.username.trim().is_empty() {
            return Err(ProvisionError::NoAccount {
                path: config.source.clone(),
            });
        }
        let mut channels: Vec<String> = Vec::new();
        for r in &config.radios {
            if !channels.contains(&r.channel) {
                channels.push(r.channel.clone());
            }
        }
        Ok(Desired {
            username: config.zello.username.clone(),
            password: config.password()?,
            channels,
            role,
            reset_password,
        })
    }
}

/// What the account is on the network now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountState {
    /// There is no such user.
    Missing,
    /// A normal user (not a gateway).
    User,
    /// A gateway.
    Gateway,
}

/// What the network holds, as far as the plan needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Current {
    /// The gateway's account.
    pub account: AccountState,
    /// The channels the account is in.
    pub member_of: BTreeSet<String>,
    /// Every channel of the network.
    pub channels: BTreeSet<String>,
    /// The roles of the configured channels that exist (asked only with a role).
    pub roles: BTreeMap<String, BTreeSet<String>>,
    /// Whether one more gateway may be added.
    pub can_add_gateways: bool,
    /// The plan's gateway limit, when known.
    pub max_gateways: Option<u64>,
}

/// One change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Create the gateway account with its password.
    CreateGateway {
        /// The username.
        name: String,
    },
    /// Make an existing normal user a gateway.
    MakeGateway {
        /// The username.
        name: String,
    },
    /// Set the account's password.
    SetPassword {
        /// The username.
        name: String,
    },
    /// Create a group channel.
    CreateChannel {
        /// Its name.
        name: String,
    },
    /// Add the account to channels.
    AddToChannels {
        /// The username.
        user: String,
        /// The channels.
        channels: Vec<String>,
    },
    /// Give the account a role in a channel.
    AssignRole {
        /// The username.
        user: String,
        /// The channel.
        channel: String,
        /// The role.
        role: String,
    },
}

fn quoted(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::CreateGateway { name } => {
                write!(
                    f,
                    "create gateway account {name:?} with the configured password"
                )
            }
            Step::MakeGateway { name } => {
                write!(f, "make the existing user {name:?} a gateway account")
            }
            Step::SetPassword { name } => {
                write!(f, "set the password of {name:?} to the configured one")
            }
            Step::CreateChannel { name } => write!(f, "create group channel {name:?}"),
            Step::AddToChannels { user, channels } => {
                let s = if channels.len() == 1 { "" } else { "s" };
                write!(f, "add {user:?} to channel{s} {}", quoted(channels))
            }
            Step::AssignRole {
                user,
                channel,
                role,
            } => write!(
                f,
                "give {user:?} the role {role:?} in channel {channel:?} (sent on every run: the API does not tell roles assigned)"
            ),
        }
    }
}

/// Why provisioning could not be done.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// The gateway configuration cannot be used.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The admin credentials cannot be used.
    #[error(transparent)]
    Admin(#[from] AdminError),
    /// A call failed before anything was changed.
    #[error(transparent)]
    Work(#[from] WorkError),
    /// The configuration names no account.
    #[error(
        "config file {path}: [zello] has no username; provision sets up the gateway's own account, so name it there"
    )]
    NoAccount {
        /// The configuration file.
        path: String,
    },
    /// The gateway account is the administrator's own.
    #[error(
        "the gateway's username {0:?} is the administrator's: give the gateway an account of its own"
    )]
    AdminAccount(String),
    /// No more gateways may be added.
    #[error(
        "cannot make {name:?} a gateway: limits reached, the network's plan allows no more gateways{} (code 407): delete an unused gateway or raise the limit in the web console",
        max.map(|m| format!(" (at most {m})")).unwrap_or_default()
    )]
    GatewayLimit {
        /// The account.
        name: String,
        /// The limit, when known.
        max: Option<u64>,
    },
    /// The role to give does not exist in some channels.
    #[error(
        "role {role:?} does not exist in channel(s) {}: create it in the web console (the channel's Roles), or leave out --role",
        quoted(channels)
    )]
    MissingRole {
        /// The role.
        role: String,
        /// The channels without it (new ones included).
        channels: Vec<String>,
    },
    /// A step failed part-way through the plan.
    #[error(
        "{step} failed after {done} of {total} step(s) were done: {source}\nRunning provision again is safe: it only does what is still missing"
    )]
    Step {
        /// The step.
        step: String,
        /// Steps done before it.
        done: usize,
        /// Steps planned.
        total: usize,
        /// Why it failed.
        #[source]
        source: WorkError,
    },
}

/// The steps that take the network from `current` to `desired`, in order.
pub fn plan(desired: &Desired, current: &Current) -> Result<Vec<Step>, ProvisionError> {
    let name = &desired.username;
    let mut steps = Vec::new();
    match current.account {
        AccountState::Missing | AccountState::User if !current.can_add_gateways => {
            return Err(ProvisionError::GatewayLimit {
                name: name.clone(),
                max: current.max_gateways,
            });
        }
        AccountState::Missing => steps.push(Step::CreateGateway { name: name.clone() }),
        AccountState::User => steps.push(Step::MakeGateway { name: name.clone() }),
        AccountState::Gateway => {}
    }
    if desired.reset_password && current.account != AccountState::Missing {
        steps.push(Step::SetPassword { name: name.clone() });
    }
    if let Some(role) = &desired.role {
        let without: Vec<String> = desired
            .channels
            .iter()
            .filter(|c| current.roles.get(*c).is_none_or(|r| !r.contains(role)))
            .cloned()
            .collect();
        if !without.is_empty() {
            return Err(ProvisionError::MissingRole {
                role: role.clone(),
                channels: without,
            });
        }
    }
    for c in &desired.channels {
        if !current.channels.contains(c) {
            steps.push(Step::CreateChannel { name: c.clone() });
        }
    }
    let missing: Vec<String> = desired
        .channels
        .iter()
        .filter(|c| current.account == AccountState::Missing || !current.member_of.contains(*c))
        .cloned()
        .collect();
    if !missing.is_empty() {
        steps.push(Step::AddToChannels {
            user: name.clone(),
            channels: missing,
        });
    }
    if let Some(role) = &desired.role {
        for c in &desired.channels {
            steps.push(Step::AssignRole {
                user: name.clone(),
                channel: c.clone(),
                role: role.clone(),
            });
        }
    }
    Ok(steps)
}

/// Reads what the plan needs from the network (reads only).
pub async fn survey(client: &WorkClient, desired: &Desired) -> Result<Current, WorkError> {
    let name = &desired.username;
    let (account, user) = match client.user(name, true).await? {
        Some(u) => (AccountState::Gateway, Some(u)),
        None => match client.user(name, false).await? {
            Some(u) => (AccountState::User, Some(u)),
            None => (AccountState::Missing, None),
        },
    };
    let (can_add_gateways, max_gateways) = if account == AccountState::Gateway {
        (true, None)
    } else {
        let gateways = client
            .users(&UserQuery {
                gateway: true,
                ..UserQuery::default()
            })
            .await?;
        (gateways.can_add_gateways, gateways.limits.max_gateways)
    };
    let channels: BTreeSet<String> = client
        .channels(&ChannelQuery::default())
        .await?
        .into_iter()
        .map(|c| c.name)
        .collect();
    let mut roles = BTreeMap::new();
    if desired.role.is_some() {
        for c in desired.channels.iter().filter(|c| channels.contains(*c)) {
            let names = match client.roles(c).await {
                Ok(r) => r.into_iter().map(|r| r.name).collect(),
                Err(e) if e.code() == Some(ApiCode::NotFound) => BTreeSet::new(),
                Err(e) => return Err(e),
            };
            roles.insert(c.clone(), names);
        }
    }
    Ok(Current {
        account,
        member_of: user
            .map(|u| u.channels.into_iter().collect())
            .unwrap_or_default(),
        channels,
        roles,
        can_add_gateways,
        max_gateways,
    })
}

/// Carries out `steps`, calling `done` after each.
pub async fn apply(
    client: &WorkClient,
    desired: &Desired,
    steps: &[Step],
    mut done: impl FnMut(&Step),
) -> Result<(), ProvisionError> {
    for (i, step) in steps.iter().enumerate() {
        let result = match step {
            Step::CreateGateway { name } => {
                client
                    .save_user(&UserSave {
                        name: name.clone(),
                        password: Some(desired.password.clone()),
                        gateway: Some(true),
                        add: true,
                        ..UserSave::default()
                    })
                    .await
            }
            Step::MakeGateway { name } => {
                client
                    .save_user(&UserSave {
                        name: name.clone(),
                        gateway: Some(true),
                        ..UserSave::default()
                    })
                    .await
            }
            Step::SetPassword { name } => {
                client
                    .save_user(&UserSave {
                        name: name.clone(),
                        password: Some(desired.password.clone()),
                        ..UserSave::default()
                    })
                    .await
            }
            Step::CreateChannel { name } => {
                client
                    .add_channel(&NewChannel {
                        name: name.clone(),
                        shared: Some(true),
                        ..NewChannel::default()
                    })
                    .await
            }
            Step::AddToChannels { user, channels } => {
                client.add_to_channels(&[user], channels).await
            }
            Step::AssignRole {
                user,
                channel,
                role,
            } => client.add_to_role(channel, role, &[user]).await,
        };
        if let Err(source) = result {
            return Err(ProvisionError::Step {
                step: step.to_string(),
                done: i,
                total: steps.len(),
                source,
            });
        }
        done(step);
    }
    Ok(())
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The plan.
    pub steps: Vec<Step>,
    /// Whether it was carried out (false for a dry run).
    pub applied: bool,
}

/// Surveys, plans and (unless `dry_run`) applies, printing each line with `print`.
pub async fn provision(
    client: &WorkClient,
    desired: &Desired,
    dry_run: bool,
    mut print: impl FnMut(String),
) -> Result<Outcome, ProvisionError> {
    let current = survey(client, desired).await?;
    let steps = plan(desired, &current)?;
    let name = &desired.username;
    if steps.is_empty() {
        print(format!(
            "nothing to do: {name:?} is a gateway account in every configured channel ({})",
            quoted(&desired.channels)
        ));
        return Ok(Outcome {
            steps,
            applied: !dry_run,
        });
    }
    print(format!(
        "{} for gateway {name:?} on {}:",
        if dry_run { "Plan (dry run)" } else { "Plan" },
        client.base_url().trim_end_matches('/')
    ));
    for (i, s) in steps.iter().enumerate() {
        print(format!("  {}. {s}", i + 1));
    }
    if dry_run {
        print("dry run: nothing was changed".into());
        return Ok(Outcome {
            steps,
            applied: false,
        });
    }
    let mut n = 0;
    apply(client, desired, &steps, |s| {
        n += 1;
        print(format!("done {n}/{}: {s}", steps.len()))
    })
    .await?;
    print(format!("{name:?} is set up"));
    Ok(Outcome {
        steps,
        applied: true,
    })
}

/// `zello-gateway provision`: the whole command, logging in and out.
pub async fn run(config_path: &Path, args: &ProvisionArgs) -> Result<(), ProvisionError> {
    let config = Config::load(config_path)?;
    let admin = Admin::load(args.admin.as_deref())?;
    for w in &admin.warnings {
        eprintln!("warning: {w}");
    }
    let desired = Desired::from_config(&config, args.role.clone(), args.reset_password)?;
    if desired.username == admin.username {
        return Err(ProvisionError::AdminAccount(desired.username));
    }
    let mut client = super::login(&admin, ClientOptions::default()).await?;
    let result = provision(&client, &desired, args.dry_run, |line| println!("{line}")).await;
    if let Err(e) = client.logout().await {
        tracing::debug!("logout: {e}");
    }
    result.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desired(channels: &[&str], role: Option<&str>) -> Desired {
        Desired {
            username: "gw1".into(),
            password: Secret::new("pw"),
            channels: channels.iter().map(|c| c.to_string()).collect(),
            role: role.map(String::from),
            reset_password: false,
        }
    }

    fn current(account: AccountState, member_of: &[&str], channels: &[&str]) -> Current {
        Current {
            account,
            member_of: member_of.iter().map(|c| c.to_string()).collect(),
            channels: channels.iter().map(|c| c.to_string()).collect(),
            roles: BTreeMap::new(),
            can_add_gateways: true,
            max_gateways: None,
        }
    }

    #[test]
    fn a_new_gateway_gets_everything() {
        let steps = plan(
            &desired(&["A", "B"], None),
            &current(AccountState::Missing, &[], &["A"]),
        )
        .unwrap();
        assert_eq!(
            steps,
            [
                Step::CreateGateway { name: "gw1".into() },
                Step::CreateChannel { name: "B".into() },
                Step::AddToChannels {
                    user: "gw1".into(),
                    channels: vec!["A".into(), "B".into()]
                },
            ]
        );
        assert_eq!(steps[2].to_string(), "add \"gw1\" to channels \"A\", \"B\"");
    }

    #[test]
    fn a_set_up_gateway_needs_nothing() {
        let d = desired(&["A", "B"], None);
        let c = current(AccountState::Gateway, &["A", "B", "Other"], &["A", "B"]);
        assert_eq!(plan(&d, &c).unwrap(), []);
        let mut d = d;
        d.reset_password = true;
        assert_eq!(
            plan(&d, &c).unwrap(),
            [Step::SetPassword { name: "gw1".into() }]
        );
    }

    #[test]
    fn a_normal_user_is_made_a_gateway_and_joins_what_it_lacks() {
        let steps = plan(
            &desired(&["A", "B"], None),
            &current(AccountState::User, &["A"], &["A", "B"]),
        )
        .unwrap();
        assert_eq!(
            steps,
            [
                Step::MakeGateway { name: "gw1".into() },
                Step::AddToChannels {
                    user: "gw1".into(),
                    channels: vec!["B".into()]
                },
            ]
        );
    }

    #[test]
    fn limits_and_missing_roles_stop_the_plan_before_any_change() {
        let mut c = current(AccountState::Missing, &[], &["A"]);
        c.can_add_gateways = false;
        c.max_gateways = Some(2);
        let e = plan(&desired(&["A"], None), &c).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("limits reached"), "{text}");
        assert!(text.contains("at most 2") && text.contains("407"), "{text}");

        let mut c = current(AccountState::Gateway, &["A"], &["A"]);
        c.roles.insert("A".into(), ["drivers".to_string()].into());
        let e = plan(&desired(&["A", "New"], Some("drivers")), &c).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("role \"drivers\" does not exist in channel(s) \"New\""),
            "{e}"
        );
        let steps = plan(&desired(&["A"], Some("drivers")), &c).unwrap();
        assert_eq!(
            steps,
            [Step::AssignRole {
                user: "gw1".into(),
                channel: "A".into(),
                role: "drivers".into()
            }]
        );
    }
}
