//! The emulated administration calls: users, channels, members, contacts, roles.

use super::*;

impl WorkState {
    pub(super) fn counts(&self) -> (u64, u64) {
        let gateways = self.data.users.values().filter(|u| u.gateway).count() as u64;
        (self.data.users.len() as u64 - gateways, gateways)
    }

    pub(super) fn can_add(&self, gateway: bool) -> bool {
        let (users, gateways) = self.counts();
        if gateway {
            self.data.limits.max_gateways.is_none_or(|m| gateways < m)
        } else {
            self.data.limits.max_users.is_none_or(|m| users < m)
        }
    }

    pub(super) fn user_json(&self, u: &SimUser) -> Value {
        serde_json::to_value(User {
            name: u.name.clone(),
            email: u.email.clone(),
            admin: u.admin,
            limited_access: u.limited_access,
            job: u.job.clone(),
            full_name: u.full_name.clone(),
            channels: u.channels.iter().cloned().collect(),
        })
        .unwrap_or(Value::Null)
    }

    pub(super) fn user_get(&self, req: &Request) -> Answer {
        let p = req.path_params();
        let gateway = truthy(p.get("gateway").map(String::as_str)).unwrap_or(false);
        let users: Vec<&SimUser> = self
            .data
            .users
            .values()
            .filter(|u| u.gateway == gateway)
            .collect();
        let users = named_page(users, &p, "login", |u| &u.name)?;
        let limits = &self.data.limits;
        let limit = |m: Option<u64>| m.map(|m| m.to_string()).unwrap_or_default();
        ok(json!({
            "users": users.iter().map(|u| self.user_json(u)).collect::<Vec<_>>(),
            "limits": { "maxUsers": limit(limits.max_users), "maxGateways": limit(limits.max_gateways) },
            "canAddUsers": self.can_add(false),
            "canAddGateways": self.can_add(true),
        }))
    }

    pub(super) fn user_save(&mut self, req: &Request) -> Answer {
        let b = &req.body;
        let name = b.get("name").unwrap_or_default().trim().to_string();
        if name.is_empty() {
            return Err(MISSING);
        }
        let exists = self.data.users.contains_key(&name);
        let gateway = truthy(b.get("gateway"));
        if exists {
            if truthy(b.get("add")) == Some(true) {
                return Err(ApiFailure(405));
            }
            let was_gateway = self.data.users[&name].gateway;
            if let Some(g) = gateway
                && g != was_gateway
                && !self.can_add(g)
            {
                return Err(ApiFailure(407));
            }
        } else {
            if b.get("password").is_none_or(str::is_empty) {
                return Err(MISSING);
            }
            if !self.can_add(gateway.unwrap_or(false)) {
                return Err(ApiFailure(407));
            }
        }
        let user = self
            .data
            .users
            .entry(name.clone())
            .or_insert_with(|| SimUser {
                name,
                ..SimUser::default()
            });
        if let Some(p) = b.get("password").filter(|p| !p.is_empty()) {
            user.password_md5 = p.to_ascii_lowercase();
        }
        for (field, value) in [
            ("email", &mut user.email),
            ("full_name", &mut user.full_name),
            ("job", &mut user.job),
        ] {
            if let Some(v) = b.get(field) {
                *value = v.to_string();
            }
        }
        for (field, value) in [
            ("admin", &mut user.admin),
            ("limited_access", &mut user.limited_access),
            ("gateway", &mut user.gateway),
        ] {
            if let Some(v) = truthy(b.get(field)) {
                *value = v;
            }
        }
        if let Some(t) = b.get("tags") {
            user.tags = tags(t);
        }
        ok(json!({}))
    }

    pub(super) fn known_users(&self, names: &[String]) -> Result<(), ApiFailure> {
        if names.is_empty() {
            return Err(MISSING);
        }
        if names.iter().all(|n| self.data.users.contains_key(n)) {
            Ok(())
        } else {
            Err(NOT_FOUND)
        }
    }

    pub(super) fn user_delete(&mut self, req: &Request) -> Answer {
        let names = req.body.all("login");
        self.known_users(&names)?;
        for n in &names {
            self.data.users.remove(n);
            for c in self.data.channels.values_mut() {
                c.assignments.remove(n);
            }
            for u in self.data.users.values_mut() {
                u.contacts.remove(n);
            }
        }
        ok(json!({}))
    }

    pub(super) fn membership(
        &mut self,
        users: &[String],
        channels: &[String],
        add: bool,
    ) -> Answer {
        self.known_users(users)?;
        if channels.is_empty() {
            return Err(MISSING);
        }
        if !channels.iter().all(|c| self.data.channels.contains_key(c)) {
            return Err(NOT_FOUND);
        }
        for name in users {
            for c in channels {
                if add {
                    self.data
                        .users
                        .get_mut(name)
                        .map(|u| u.channels.insert(c.clone()));
                } else {
                    self.data.users.get_mut(name).map(|u| u.channels.remove(c));
                    self.data
                        .channels
                        .get_mut(c)
                        .map(|ch| ch.assignments.remove(name));
                }
            }
        }
        ok(json!({}))
    }

    pub(super) fn contacts(&mut self, req: &Request, add: bool) -> Answer {
        let owner = req.rest().first().ok_or(MISSING)?.clone();
        let contacts = req.body.all("login");
        self.known_users(&contacts)?;
        let user = self.data.users.get_mut(&owner).ok_or(NOT_FOUND)?;
        for c in contacts {
            if add {
                user.contacts.insert(c);
            } else {
                user.contacts.remove(&c);
            }
        }
        ok(json!({}))
    }

    pub(super) fn assign_template(&mut self, req: &Request) -> Answer {
        let template = req.path_params().remove("name").unwrap_or_default();
        let users = req.body.all("users");
        self.known_users(&users)?;
        if !template.is_empty() && !self.data.templates.contains(&template) {
            return Err(NOT_FOUND);
        }
        for u in users {
            if let Some(user) = self.data.users.get_mut(&u) {
                user.template = (!template.is_empty()).then(|| template.clone());
            }
        }
        ok(json!({}))
    }

    pub(super) fn channel_get(&self, req: &Request) -> Answer {
        let p = req.path_params();
        let channels = named_page(
            self.data.channels.values().collect(),
            &p,
            "name",
            |c: &SimChannel| &c.name,
        )?;
        let list: Vec<Value> = channels
            .iter()
            .map(|c| {
                let count = self
                    .data
                    .users
                    .values()
                    .filter(|u| u.channels.contains(&c.name))
                    .count();
                // As the API reference shows it: the count a string, the flags 0 or 1.
                json!({
                    "name": c.name,
                    "count": count.to_string(),
                    "is_shared": u8::from(c.shared),
                    "is_invisible": u8::from(c.invisible),
                })
            })
            .collect();
        debug_assert!(
            list.iter()
                .all(|v| serde_json::from_value::<Channel>(v.clone()).is_ok())
        );
        ok(json!({ "channels": list }))
    }

    pub(super) fn channel_add(&mut self, req: &Request) -> Answer {
        let p = req.path_params();
        let name = p.get("name").map(|n| n.trim()).unwrap_or_default();
        if name.is_empty() {
            return Err(MISSING);
        }
        if self.data.channels.contains_key(name) {
            return Err(ApiFailure(405));
        }
        let channel = SimChannel {
            name: name.to_string(),
            shared: truthy(p.get("shared").map(String::as_str)).unwrap_or(false),
            invisible: truthy(p.get("invisible").map(String::as_str)).unwrap_or(false),
            tags: p.get("tags").map(|t| tags(t)).unwrap_or_default(),
            ..SimChannel::default()
        };
        self.data.channels.insert(channel.name.clone(), channel);
        ok(json!({}))
    }

    pub(super) fn channel_delete(&mut self, req: &Request) -> Answer {
        let names = req.body.all("name");
        if names.is_empty() {
            return Err(MISSING);
        }
        if !names.iter().all(|n| self.data.channels.contains_key(n)) {
            return Err(NOT_FOUND);
        }
        for n in &names {
            self.data.channels.remove(n);
            for u in self.data.users.values_mut() {
                u.channels.remove(n);
            }
        }
        ok(json!({}))
    }

    pub(super) fn channel_named(
        &mut self,
        req: &Request,
        key: &str,
    ) -> Result<&mut SimChannel, ApiFailure> {
        let name = req.path_params().remove(key).ok_or(MISSING)?;
        self.data.channels.get_mut(&name).ok_or(NOT_FOUND)
    }

    pub(super) fn roles_list(&mut self, req: &Request) -> Answer {
        let c = self.channel_named(req, "name")?;
        let roles: Vec<Role> = c
            .roles
            .iter()
            .map(|(name, settings)| Role {
                name: name.clone(),
                settings: settings.clone(),
            })
            .collect();
        ok(json!({ "roles": roles }))
    }

    pub(super) fn save_role(&mut self, req: &Request) -> Answer {
        let role = req.path_params().remove("name").unwrap_or_default();
        if role.is_empty() {
            return Err(MISSING);
        }
        let settings = req.body.get("settings").ok_or(MISSING)?;
        let settings: RoleSettings = serde_json::from_str(settings).map_err(|_| ApiFailure(400))?;
        let c = self.channel_named(req, "channel")?;
        c.roles.insert(role, settings);
        ok(json!({}))
    }

    pub(super) fn add_to_role(&mut self, req: &Request) -> Answer {
        let role = req.path_params().remove("name").unwrap_or_default();
        let users = req.body.all("login");
        self.known_users(&users)?;
        let c = self.channel_named(req, "channel")?;
        if !role.is_empty() && !c.roles.contains_key(&role) {
            return Err(NOT_FOUND);
        }
        for u in users {
            if role.is_empty() {
                c.assignments.remove(&u);
            } else {
                c.assignments.insert(u, role.clone());
            }
        }
        ok(json!({}))
    }

    pub(super) fn delete_role(&mut self, req: &Request) -> Answer {
        let roles = req.body.all("roles");
        if roles.is_empty() {
            return Err(MISSING);
        }
        let c = self.channel_named(req, "channel")?;
        if !roles.iter().all(|r| c.roles.contains_key(r)) {
            return Err(NOT_FOUND);
        }
        for r in &roles {
            c.roles.remove(r);
        }
        c.assignments.retain(|_, r| !roles.contains(r));
        ok(json!({}))
    }
}

/// `items` cut down to the one the path parameter `key` names, when it names one (not found
/// when none is), then paged by the `start` and `max` parameters.
fn named_page<'a, T>(
    mut items: Vec<&'a T>,
    p: &HashMap<String, String>,
    key: &str,
    name_of: impl Fn(&T) -> &String,
) -> Result<Vec<&'a T>, ApiFailure> {
    if let Some(name) = p.get(key) {
        items.retain(|item| name_of(item) == name);
        if items.is_empty() {
            return Err(NOT_FOUND);
        }
    }
    Ok(page(
        items,
        number(p.get("start").map(String::as_str))?,
        number(p.get("max").map(String::as_str))?,
    ))
}
