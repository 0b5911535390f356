//! The administration calls: users, channels, their members and contacts, roles.

use super::*;

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

    /// `user/addto/{channel}`: adds users to one channel.
    pub async fn add_to_channel<S: AsRef<str>>(
        &self,
        channel: &str,
        logins: &[S],
    ) -> Result<(), WorkError> {
        let path = format!("user/addto/{}", path_segment(channel));
        self.write_list("user/addto", path, "login", logins).await
    }

    /// `user/addtochannels`: adds users to channels.
    pub async fn add_to_channels<S: AsRef<str>, T: AsRef<str>>(
        &self,
        users: &[S],
        channels: &[T],
    ) -> Result<(), WorkError> {
        self.users_and_channels("user/addtochannels", users, channels)
            .await
    }

    /// `user/removefrom/{channel}`: removes users from one channel.
    pub async fn remove_from_channel<S: AsRef<str>>(
        &self,
        channel: &str,
        logins: &[S],
    ) -> Result<(), WorkError> {
        let path = format!("user/removefrom/{}", path_segment(channel));
        self.write_list("user/removefrom", path, "login", logins)
            .await
    }

    /// `user/removefromchannels`: removes users from channels.
    pub async fn remove_from_channels<S: AsRef<str>, T: AsRef<str>>(
        &self,
        users: &[S],
        channels: &[T],
    ) -> Result<(), WorkError> {
        self.users_and_channels("user/removefromchannels", users, channels)
            .await
    }

    /// `user/addcontactsto/{username}`: adds direct contacts to a user.
    pub async fn add_contacts<S: AsRef<str>>(
        &self,
        username: &str,
        contacts: &[S],
    ) -> Result<(), WorkError> {
        let path = format!("user/addcontactsto/{}", path_segment(username));
        self.write_list("user/addcontactsto", path, "login", contacts)
            .await
    }

    /// `user/removecontactsfrom/{username}`: removes direct contacts of a user.
    pub async fn remove_contacts<S: AsRef<str>>(
        &self,
        username: &str,
        contacts: &[S],
    ) -> Result<(), WorkError> {
        let path = format!("user/removecontactsfrom/{}", path_segment(username));
        self.write_list("user/removecontactsfrom", path, "login", contacts)
            .await
    }

    /// `user/assigntemplate/name/{template}`: an empty template resets the assignment.
    pub async fn assign_template<S: AsRef<str>>(
        &self,
        template: &str,
        users: &[S],
    ) -> Result<(), WorkError> {
        let path = format!("user/assigntemplate/name/{}", path_segment(template));
        self.write_list("user/assigntemplate", path, "users", users)
            .await
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

    /// `channel/deleterole`.
    pub async fn delete_roles<S: AsRef<str>>(
        &self,
        channel: &str,
        roles: &[S],
    ) -> Result<(), WorkError> {
        let path = format!("channel/deleterole/channel/{}", path_segment(channel));
        self.write_list("channel/deleterole", path, "roles", roles)
            .await
    }
}
