//! The administration calls: users, channels, their members and contacts, roles.

use super::*;

/// The calls that send lists, as methods of [`WorkClient`]: `name(users, channels)` sends
/// both lists to `method`; `name(target, items)` sends `items` as `field` to
/// `method/{target}`, or to `method/key/{target}` with a `key`.
macro_rules! list_writes {
    () => {};
    (
        $(#[doc = $doc:literal])*
        $fn:ident(users, channels) => $method:literal;
        $($rest:tt)*
    ) => {
        $(#[doc = $doc])*
        pub async fn $fn<S: AsRef<str>, T: AsRef<str>>(
            &self,
            users: &[S],
            channels: &[T],
        ) -> Result<(), WorkError> {
            self.users_and_channels($method, users, channels).await
        }
        list_writes! { $($rest)* }
    };
    (
        $(#[doc = $doc:literal])*
        $fn:ident($target:ident, $items:ident) => $method:literal $(/ $key:literal)?, $field:literal;
        $($rest:tt)*
    ) => {
        $(#[doc = $doc])*
        pub async fn $fn<S: AsRef<str>>(
            &self,
            $target: &str,
            $items: &[S],
        ) -> Result<(), WorkError> {
            let path = format!(concat!($method, $("/", $key,)? "/{}"), path_segment($target));
            self.write_list($method, path, $field, $items).await
        }
        list_writes! { $($rest)* }
    };
}

impl WorkClient {
    // ---- Users ----

    /// `user/get`: users (or gateways), one page.
    pub async fn users(&self, q: &UserQuery) -> Result<UserList, WorkError> {
        let mut path = "user/get".to_string();
        if let Some(login) = &q.login {
            path += &format!("/login/{}", path_segment(login));
        }
        if q.gateway {
            path += "/gateway/true";
        }
        if let Some(max) = q.max {
            path += &format!("/max/{max}");
        }
        if let Some(start) = q.start {
            path += &format!("/start/{start}");
        }
        self.typed(self.read("user/get", path)).await
    }

    /// One user or gateway by username; `None` when there is none (code 404 or an empty
    /// list).
    pub async fn user(&self, login: &str, gateway: bool) -> Result<Option<User>, WorkError> {
        let q = UserQuery {
            login: Some(login.to_string()),
            gateway,
            ..UserQuery::default()
        };
        match self.users(&q).await {
            Ok(list) => Ok(list.users.into_iter().find(|u| u.name == login)),
            Err(e) if e.code() == Some(ApiCode::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `user/save`: creates or updates a user.
    pub async fn save_user(&self, u: &UserSave) -> Result<(), WorkError> {
        let body = Form::new()
            .field("name", &u.name)
            .opt(
                "password",
                u.password.as_ref().map(|p| password_hash(p.expose())),
            )
            .opt("email", u.email.as_ref())
            .opt("full_name", u.full_name.as_ref())
            .opt("job", u.job.as_ref())
            .opt_bool("admin", u.admin)
            .opt_bool("limited_access", u.limited_access)
            .opt_bool("gateway", u.gateway)
            .opt("tags", u.tags.as_ref().map(|t| t.join(",")))
            .opt("add", u.add.then_some("true"));
        self.call(self.write("user/save", "user/save".into(), Some(body)))
            .await
            .map(drop)
    }

    /// `user/delete`.
    pub async fn delete_users<S: AsRef<str>>(&self, logins: &[S]) -> Result<(), WorkError> {
        self.write_list("user/delete", "user/delete".into(), "login", logins)
            .await
    }

    list_writes! {
        /// `user/addto/{channel}`: adds users to one channel.
        add_to_channel(channel, logins) => "user/addto", "login";
        /// `user/addtochannels`: adds users to channels.
        add_to_channels(users, channels) => "user/addtochannels";
        /// `user/removefrom/{channel}`: removes users from one channel.
        remove_from_channel(channel, logins) => "user/removefrom", "login";
        /// `user/removefromchannels`: removes users from channels.
        remove_from_channels(users, channels) => "user/removefromchannels";
        /// `user/addcontactsto/{username}`: adds direct contacts to a user.
        add_contacts(username, contacts) => "user/addcontactsto", "login";
        /// `user/removecontactsfrom/{username}`: removes direct contacts of a user.
        remove_contacts(username, contacts) => "user/removecontactsfrom", "login";
        /// `user/assigntemplate/name/{template}`: an empty template resets the assignment.
        assign_template(template, users) => "user/assigntemplate" / "name", "users";
    }

    // ---- Channels ----

    /// `channel/get`: channels, one page.
    pub async fn channels(&self, q: &ChannelQuery) -> Result<Vec<Channel>, WorkError> {
        #[derive(serde::Deserialize)]
        struct Answer {
            #[serde(default)]
            channels: Vec<Channel>,
        }
        let mut path = "channel/get".to_string();
        if let Some(name) = &q.name {
            path += &format!("/name/{}", path_segment(name));
        }
        if let Some(max) = q.max {
            path += &format!("/max/{max}");
        }
        if let Some(start) = q.start {
            path += &format!("/start/{start}");
        }
        let a: Answer = self.typed(self.read("channel/get", path)).await?;
        Ok(a.channels)
    }

    /// `channel/add` (a GET that creates).
    pub async fn add_channel(&self, c: &NewChannel) -> Result<(), WorkError> {
        let mut path = format!("channel/add/name/{}", path_segment(&c.name));
        if let Some(shared) = c.shared {
            path += &format!("/shared/{}", bool_str(shared));
        }
        if let Some(invisible) = c.invisible {
            path += &format!("/invisible/{}", bool_str(invisible));
        }
        if !c.tags.is_empty() {
            path += &format!("/tags/{}", path_segment(&c.tags.join(",")));
        }
        self.call(self.write("channel/add", path, None))
            .await
            .map(drop)
    }

    /// `channel/delete`.
    pub async fn delete_channels<S: AsRef<str>>(&self, names: &[S]) -> Result<(), WorkError> {
        self.write_list("channel/delete", "channel/delete".into(), "name", names)
            .await
    }

    /// `channel/roleslist`: the roles of a channel.
    pub async fn roles(&self, channel: &str) -> Result<Vec<Role>, WorkError> {
        #[derive(serde::Deserialize)]
        struct Answer {
            #[serde(default)]
            roles: Vec<Role>,
        }
        let path = format!("channel/roleslist/name/{}", path_segment(channel));
        let a: Answer = self.typed(self.read("channel/roleslist", path)).await?;
        Ok(a.roles)
    }

    /// `channel/saverole`: creates or updates a role.
    pub async fn save_role(&self, channel: &str, role: &Role) -> Result<(), WorkError> {
        let path = format!(
            "channel/saverole/channel/{}/name/{}",
            path_segment(channel),
            path_segment(&role.name)
        );
        let settings =
            serde_json::to_string(&role.settings).map_err(|e| WorkError::BadResponse {
                method: "channel/saverole",
                message: e.to_string(),
            })?;
        let body = Form::new().field("settings", settings);
        self.call(self.write("channel/saverole", path, Some(body)))
            .await
            .map(drop)
    }

    /// `channel/addtorole`: gives users a role in a channel; an empty role resets their
    /// assignment.
    pub async fn add_to_role<S: AsRef<str>>(
        &self,
        channel: &str,
        role: &str,
        logins: &[S],
    ) -> Result<(), WorkError> {
        let path = format!(
            "channel/addtorole/channel/{}/name/{}",
            path_segment(channel),
            path_segment(role)
        );
        self.write_list("channel/addtorole", path, "login", logins)
            .await
    }

    list_writes! {
        /// `channel/deleterole`.
        delete_roles(channel, roles) => "channel/deleterole" / "channel", "roles";
    }
}
