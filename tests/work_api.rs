//! The Zello Work API client against the emulator, over loopback HTTP: every method, the
//! two-phase login, every error code, retries of reads and none of writes.

mod common;

use common::work::{self, API_KEY};
use md5::{Digest as _, Md5};
use std::time::Duration;
use zello_gateway::secret::Secret;
use zello_gateway::work::sim::WorkFault;
use zello_gateway::work::types::*;
use zello_gateway::work::{ApiCode, Delivery, MediaProgress, WorkClient, WorkError};

/// md5 in hex, written here apart from the program's own (`work::wire`).
fn md5(text: &str) -> String {
    Md5::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn code(e: &WorkError) -> Option<u16> {
    e.code().map(|c| c.number())
}

#[tokio::test]
async fn the_login_is_two_phase_with_the_hash_the_reference_describes() {
    let sim = work::sim(0).await;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let get = |path: String| {
        let http = http.clone();
        async move {
            let body = http.get(path).send().await.unwrap().bytes().await.unwrap();
            serde_json::from_slice::<serde_json::Value>(&body).unwrap()
        }
    };
    // Phase one: a token and a session id, by hand.
    let first = get(format!("{}/user/gettoken", sim.url())).await;
    assert_eq!(first["code"], "200");
    let token = first["token"].as_str().unwrap().to_string();
    let sid = first["sid"].as_str().unwrap().to_string();
    // Before phase two the session may do nothing.
    let early = get(format!("{}/user/get?sid={sid}", sim.url())).await;
    assert_eq!(early["code"], "301");
    // Phase two with md5(md5(password) + token + api_key) computed here.
    let login = |hash: String| {
        let http = http.clone();
        let url = format!("{}/user/login?sid={sid}", sim.url());
        async move {
            let body = http
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("username=admin&password={hash}"))
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            serde_json::from_slice::<serde_json::Value>(&body).unwrap()
        }
    };
    let wrong = login(md5(&format!("{}{token}{API_KEY}", md5("wrong")))).await;
    assert_eq!(wrong["code"], "303");
    let right = login(md5(&format!("{}{token}{API_KEY}", md5("admin")))).await;
    assert_eq!(right["code"], "200", "{right}");
    let users = get(format!("{}/user/get?sid={sid}", sim.url())).await;
    assert_eq!(users["code"], "200");

    // The client does the same.
    let mut c = WorkClient::new(&sim.url(), work::options()).unwrap();
    let t = c.get_token().await.unwrap();
    assert_eq!(t.token.expose().len(), 32);
    c.login_with_token(&t, "admin", &Secret::new("admin"), &Secret::new(API_KEY))
        .await
        .unwrap();
    assert!(c.users(&UserQuery::default()).await.is_ok());
    c.logout().await.unwrap();
    assert!(!c.has_session());
    let e = c.users(&UserQuery::default()).await.unwrap_err();
    assert!(matches!(e, WorkError::NotLoggedIn { .. }), "{e}");
    sim.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn every_error_code_comes_back_typed_with_its_meaning() {
    let sim = work::sim(0).await;
    let url = sim.url();
    let pw = |p: &str| Secret::new(p);
    let fresh = || WorkClient::new(&url, work::options()).unwrap();

    // 303: wrong password, wrong API key, unknown user.
    for (user, password, key) in [
        ("admin", "nope", API_KEY),
        ("admin", "admin", "wrong-key"),
        ("nobody", "admin", API_KEY),
    ] {
        let e = fresh()
            .login(user, &pw(password), &pw(key))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some(ApiCode::BadCredentials), "{e}");
        let text = e.to_string();
        assert!(
            text.contains("invalid username, password or API key"),
            "{text}"
        );
        assert!(!text.contains('\n'), "{text}");
    }
    // 302: a user without admin rights.
    let e = fresh()
        .login("viewer", &pw("viewer"), &pw(API_KEY))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ApiCode::NotAdmin), "{e}");
    assert!(e.to_string().contains("no admin rights"), "{e}");
    // 305: login with a session id the server never gave.
    let mut c = fresh();
    let mut t = c.get_token().await.unwrap();
    t.sid = Secret::new("0000");
    let e = c
        .login_with_token(&t, "admin", &pw("admin"), &pw(API_KEY))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ApiCode::MissingToken), "{e}");
    // 301: a call after logging out on the server's side.
    let mut c = work::admin(&sim).await;
    let other = work::admin(&sim).await;
    c.get_token().await.unwrap(); // a new, not logged-in session
    let e = c.channels(&ChannelQuery::default()).await.unwrap_err();
    assert_eq!(e.code(), Some(ApiCode::Unauthenticated), "{e}");

    // 404, 405, 605 and 407 from the data.
    let e = other
        .channels(&ChannelQuery {
            name: Some("Nope".into()),
            ..ChannelQuery::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ApiCode::NotFound), "{e}");
    let e = other
        .add_channel(&NewChannel {
            name: "Dispatch".into(),
            ..NewChannel::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ApiCode::AlreadyExists), "{e}");
    let e = other
        .save_user(&UserSave {
            name: "newbie".into(),
            ..UserSave::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ApiCode::MissingParameters), "{e}");
    sim.with_data(|d| d.limits.max_users = Some(d.users.len() as u64));
    let e = other
        .save_user(&UserSave {
            name: "newbie".into(),
            password: Some(pw("x")),
            ..UserSave::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ApiCode::LimitReached), "{e}");
    assert!(e.to_string().contains("limits reached"), "{e}");

    // 400 and the server-side failures, on demand; every code of the table in turn.
    for expected in ApiCode::ALL {
        sim.fail("channel/get", WorkFault::Code(expected.number()), 1);
        let e = other.channels(&ChannelQuery::default()).await.unwrap_err();
        assert_eq!(e.code(), Some(expected), "{e}");
        let text = e.to_string();
        assert!(text.starts_with("channel/get: "), "{text}");
        assert!(text.contains(expected.meaning()), "{text}");
        assert!(
            text.contains(&format!("code {}", expected.number())),
            "{text}"
        );
    }
    // A code outside the table still comes back, as Other.
    sim.fail("channel/get", WorkFault::Code(777), 1);
    let e = other.channels(&ChannelQuery::default()).await.unwrap_err();
    assert_eq!(e.code(), Some(ApiCode::Other(777)), "{e}");
    sim.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn users_every_method() {
    let sim = work::sim(0).await;
    let c = work::admin(&sim).await;
    // user/save: a new user with everything, then an update.
    c.save_user(&UserSave {
        name: "new user".into(),
        password: Some(Secret::new("pw 1")),
        email: Some("n@example.org".into()),
        full_name: Some("Нов Юзер".into()),
        job: Some("night shift".into()),
        admin: Some(false),
        limited_access: Some(true),
        gateway: Some(false),
        tags: Some(vec!["a".into(), "b c".into()]),
        add: true,
    })
    .await
    .unwrap();
    let u = &sim.data().users["new user"];
    assert_eq!(u.full_name, "Нов Юзер");
    assert_eq!(u.tags, ["a", "b c"]);
    assert!(u.limited_access && !u.gateway);
    assert_eq!(u.password_md5, md5("pw 1"));
    // add=true refuses an existing user; without it the user is updated.
    let again = UserSave {
        name: "new user".into(),
        add: true,
        ..UserSave::default()
    };
    assert_eq!(code(&c.save_user(&again).await.unwrap_err()), Some(405));
    c.save_user(&UserSave {
        name: "new user".into(),
        job: Some("day shift".into()),
        ..UserSave::default()
    })
    .await
    .unwrap();
    assert_eq!(sim.data().users["new user"].job, "day shift");
    assert_eq!(sim.data().users["new user"].email, "n@example.org");
    // A gateway, listed only with the gateway filter.
    c.save_user(&UserSave {
        name: "gw9".into(),
        password: Some(Secret::new("x")),
        gateway: Some(true),
        ..UserSave::default()
    })
    .await
    .unwrap();
    let gateways = c
        .users(&UserQuery {
            gateway: true,
            ..UserQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(
        gateways.users.iter().map(|u| &u.name).collect::<Vec<_>>(),
        ["gw9"]
    );
    assert_eq!(gateways.limits.max_gateways, Some(3));
    assert!(gateways.can_add_gateways && gateways.can_add_users);
    // user/get: everyone, one, and pages.
    let all = c.users(&UserQuery::default()).await.unwrap();
    let names: Vec<&str> = all.users.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "admin",
            "dispatcher1",
            "driver1",
            "driver2",
            "new user",
            "viewer"
        ]
    );
    let page = c
        .users(&UserQuery {
            max: Some(2),
            start: Some(1),
            ..UserQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(
        page.users.iter().map(|u| &u.name).collect::<Vec<_>>(),
        ["dispatcher1", "driver1"]
    );
    let one = c.user("driver2", false).await.unwrap().unwrap();
    assert_eq!(one.channels, ["Dispatch", "Yard"]);
    assert_eq!(one.full_name, "Truck 2");
    assert!(c.user("gw9", false).await.unwrap().is_none());
    assert!(c.user("gw9", true).await.unwrap().is_some());

    // Channels, one and many at a time.
    c.add_to_channel("Yard", &["new user", "gw9"])
        .await
        .unwrap();
    c.add_to_channels(&["driver1"], &["Yard"]).await.unwrap();
    let d = sim.data();
    assert!(d.users["new user"].channels.contains("Yard"));
    assert!(d.users["gw9"].channels.contains("Yard"));
    assert!(d.users["driver1"].channels.contains("Yard"));
    c.remove_from_channel("Yard", &["gw9"]).await.unwrap();
    c.remove_from_channels(&["driver1", "new user"], &["Yard", "Dispatch"])
        .await
        .unwrap();
    let d = sim.data();
    assert!(!d.users["gw9"].channels.contains("Yard"));
    assert!(d.users["driver1"].channels.is_empty());
    assert_eq!(
        code(&c.add_to_channel("Nope", &["gw9"]).await.unwrap_err()),
        Some(404)
    );
    assert_eq!(
        code(&c.add_to_channel("Yard", &["ghost"]).await.unwrap_err()),
        Some(404)
    );
    let none: [&str; 0] = [];
    assert_eq!(
        code(&c.add_to_channel("Yard", &none).await.unwrap_err()),
        Some(605)
    );

    // Contacts and templates.
    c.add_contacts("driver1", &["dispatcher1", "driver2"])
        .await
        .unwrap();
    c.remove_contacts("driver1", &["driver2"]).await.unwrap();
    assert_eq!(
        sim.data().users["driver1"]
            .contacts
            .iter()
            .collect::<Vec<_>>(),
        ["dispatcher1"]
    );
    c.assign_template("drivers", &["driver1", "driver2"])
        .await
        .unwrap();
    assert_eq!(
        sim.data().users["driver2"].template.as_deref(),
        Some("drivers")
    );
    c.assign_template("", &["driver2"]).await.unwrap();
    assert_eq!(sim.data().users["driver2"].template, None);
    assert_eq!(
        code(&c.assign_template("nope", &["driver2"]).await.unwrap_err()),
        Some(404)
    );

    // user/delete, several at once, names with spaces.
    c.delete_users(&["new user", "gw9"]).await.unwrap();
    let d = sim.data();
    assert!(!d.users.contains_key("new user") && !d.users.contains_key("gw9"));
    assert_eq!(
        code(&c.delete_users(&["gw9"]).await.unwrap_err()),
        Some(404)
    );
    sim.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn channels_and_roles_every_method() {
    let sim = work::sim(0).await;
    let c = work::admin(&sim).await;
    c.add_channel(&NewChannel {
        name: "Fire & Rescue/1".into(),
        shared: Some(true),
        invisible: Some(true),
        tags: vec!["ems".into(), "north side".into()],
    })
    .await
    .unwrap();
    c.add_channel(&NewChannel {
        name: "Talk".into(),
        ..NewChannel::default()
    })
    .await
    .unwrap();
    let d = sim.data();
    let fire = &d.channels["Fire & Rescue/1"];
    assert!(fire.shared && fire.invisible);
    assert_eq!(fire.tags, ["ems", "north side"]);
    assert!(!d.channels["Talk"].shared);

    let all = c.channels(&ChannelQuery::default()).await.unwrap();
    let names: Vec<&str> = all.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["Dispatch", "Fire & Rescue/1", "Talk", "Yard"]);
    let dispatch = &all[0];
    assert_eq!((dispatch.count, dispatch.is_shared), (3, true));
    let page = c
        .channels(&ChannelQuery {
            max: Some(1),
            start: Some(2),
            ..ChannelQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(page[0].name, "Talk");
    let one = c
        .channels(&ChannelQuery {
            name: Some("Fire & Rescue/1".into()),
            ..ChannelQuery::default()
        })
        .await
        .unwrap();
    assert!(one[0].is_invisible);

    // Roles.
    let roles = c.roles("Dispatch").await.unwrap();
    assert_eq!(
        roles.iter().map(|r| &r.name).collect::<Vec<_>>(),
        ["dispatchers", "drivers"]
    );
    assert_eq!(roles[1].settings.to, ["dispatchers"]);
    let security = Role {
        name: "security".into(),
        settings: RoleSettings {
            listen_only: true,
            no_disconnect: true,
            allow_alerts: true,
            to: vec![],
        },
    };
    c.save_role("Fire & Rescue/1", &security).await.unwrap();
    assert_eq!(
        c.roles("Fire & Rescue/1").await.unwrap(),
        std::slice::from_ref(&security)
    );
    c.add_to_channel("Fire & Rescue/1", &["driver1", "driver2"])
        .await
        .unwrap();
    c.add_to_role("Fire & Rescue/1", "security", &["driver1", "driver2"])
        .await
        .unwrap();
    assert_eq!(
        sim.data().channels["Fire & Rescue/1"].assignments["driver1"],
        "security"
    );
    // An empty role resets the assignment.
    c.add_to_role("Fire & Rescue/1", "", &["driver1"])
        .await
        .unwrap();
    let assigned = sim.data().channels["Fire & Rescue/1"].assignments.clone();
    assert_eq!(assigned.keys().collect::<Vec<_>>(), ["driver2"]);
    assert_eq!(
        code(
            &c.add_to_role("Fire & Rescue/1", "nope", &["driver1"])
                .await
                .unwrap_err()
        ),
        Some(404)
    );
    c.delete_roles("Fire & Rescue/1", &["security"])
        .await
        .unwrap();
    let d = sim.data();
    assert!(d.channels["Fire & Rescue/1"].roles.is_empty());
    assert!(d.channels["Fire & Rescue/1"].assignments.is_empty());
    assert_eq!(code(&c.roles("Nope").await.unwrap_err()), Some(404));

    // channel/delete takes the members out too.
    c.delete_channels(&["Fire & Rescue/1", "Talk"])
        .await
        .unwrap();
    let d = sim.data();
    assert!(!d.channels.contains_key("Talk"));
    assert!(!d.users["driver1"].channels.contains("Fire & Rescue/1"));
    sim.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn history_metadata_filters_pages_and_sorts() {
    let sim = work::sim(0).await;
    let c = work::admin(&sim).await;
    let q = MetadataQuery::default;
    let all = c.metadata(&q()).await.unwrap();
    assert_eq!((all.total, all.returned), (6, 6));
    // Newest first by default.
    let ids: Vec<u64> = all.messages.iter().map(|m| m.id).collect();
    assert_eq!(ids, [6, 5, 4, 3, 2, 1]);
    let ids = |m: &Metadata| m.messages.iter().map(|m| m.id).collect::<Vec<_>>();

    let dispatch = c
        .metadata(&MetadataQuery {
            via_channel: Some("Dispatch".into()),
            ..q()
        })
        .await
        .unwrap();
    assert_eq!(ids(&dispatch), [3, 2, 1]);
    assert!(dispatch.messages.iter().all(|m| m.recipient == "Dispatch"));
    let direct = c
        .metadata(&MetadataQuery {
            is_channel: Some(false),
            ..q()
        })
        .await
        .unwrap();
    assert_eq!(ids(&direct), [6, 4]);
    let voice_from_dispatch = c
        .metadata(&MetadataQuery {
            sender: Some("dispatcher1".into()),
            media_type: Some(MediaType::Voice),
            ..q()
        })
        .await
        .unwrap();
    assert_eq!(ids(&voice_from_dispatch), [6, 1]);
    let to_driver2 = c
        .metadata(&MetadataQuery {
            recipient: Some("driver2".into()),
            ..q()
        })
        .await
        .unwrap();
    // Direct to driver2, or through a channel driver2 was in.
    assert_eq!(ids(&to_driver2), [4, 2, 1]);
    let alert = c
        .metadata(&MetadataQuery {
            text: Some("desk".into()),
            ..q()
        })
        .await
        .unwrap();
    assert_eq!(alert.messages[0].kind, "call_alert");
    assert_eq!(alert.messages[0].text.as_deref(), Some("Call the desk"));
    assert_eq!(alert.messages[0].media_key, None);
    // Time and id ranges, paging, ascending order by another field.
    let times: Vec<u64> = all.messages.iter().map(|m| m.ts).collect();
    let window = c
        .metadata(&MetadataQuery {
            start_ts: Some(times[4]),
            end_ts: Some(times[2]),
            ..q()
        })
        .await
        .unwrap();
    assert_eq!(ids(&window), [4, 3, 2]);
    let range = c
        .metadata(&MetadataQuery {
            start_id: Some(2),
            end_id: Some(5),
            max: Some(2),
            start: Some(1),
            sort: Some("sender".into()),
            sort_order: Some(SortOrder::Asc),
            ..q()
        })
        .await
        .unwrap();
    // Ids 2-5 by sender: dispatcher1 (4), driver1 (2), driver2 (3), driver2 (5); page 2-3.
    assert_eq!((range.total, range.returned), (4, 2));
    assert_eq!(ids(&range), [2, 3]);
    let none = c
        .metadata(&MetadataQuery {
            eid: Some("x".into()),
            call_id: Some(7),
            ..q()
        })
        .await
        .unwrap();
    assert_eq!(none.total, 0);
    sim.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn media_long_polls_through_waiting_and_working_then_downloads() {
    let sim = work::sim(3).await;
    let c = work::admin(&sim).await;
    let voice = c
        .metadata(&MetadataQuery {
            media_type: Some(MediaType::Voice),
            max: Some(1),
            ..MetadataQuery::default()
        })
        .await
        .unwrap()
        .messages
        .remove(0);
    let key = voice.media_key.unwrap();
    let mut seen = Vec::new();
    let ready = c.media(&key, |p| seen.push(p)).await.unwrap();
    assert_eq!(
        seen,
        [
            MediaProgress::Waiting(0),
            MediaProgress::Working(50),
            MediaProgress::Working(75)
        ]
    );
    assert_eq!(ready.kind, "voice");
    assert!(ready.url.starts_with(&sim.url()), "{}", ready.url);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("clip.wav");
    let mut sizes = Vec::new();
    let n = c
        .download(&ready.url, &dest, |done, total| sizes.push((done, total)))
        .await
        .unwrap();
    let bytes = std::fs::read(&dest).unwrap();
    assert_eq!(bytes.len() as u64, n);
    assert_eq!(&bytes[..4], b"RIFF");
    assert_eq!(sizes.last(), Some(&(n, Some(n))));
    assert!(!dir.path().join("clip.wav.part").exists());

    // A poll the server holds past the timeout is repeated; so is a broken download.
    let mut quick = work::options();
    quick.media_poll_timeout = Duration::from_millis(300);
    let mut c2 = WorkClient::new(&sim.url(), quick).unwrap();
    c2.login("admin", &Secret::new("admin"), &Secret::new(API_KEY))
        .await
        .unwrap();
    sim.fail(
        "history/getmedia",
        WorkFault::Hang(Duration::from_secs(3)),
        1,
    );
    let mut seen = Vec::new();
    let ready = c2.media(&key, |p| seen.push(p)).await.unwrap();
    assert_eq!(seen, [MediaProgress::Repolling]);
    sim.fail("media", WorkFault::Break, 1);
    let n2 = c2.download(&ready.url, &dest, |_, _| {}).await.unwrap();
    assert_eq!(n2, n);
    // A key that does not exist.
    assert_eq!(code(&c.media("nope", |_| {}).await.unwrap_err()), Some(404));
    assert!(matches!(
        c.media_status(&key).await.unwrap(),
        MediaStatus::Ready(_)
    ));
    sim.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn locations_current_history_units_and_geojson() {
    let sim = work::sim(0).await;
    let c = work::admin(&sim).await;
    // By default: active users in the box. driver1 reported a minute ago inside it;
    // driver2 two hours ago.
    let boxed = c
        .locations(&LocationQuery {
            northeast: Some((32.9, -96.7)),
            southwest: Some((32.7, -96.9)),
            ..LocationQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(boxed.total, 1);
    let l = &boxed.locations[0];
    assert_eq!(l.username.as_deref(), Some("driver1"));
    assert_eq!(l.display_name.as_deref(), Some("Truck 1"));
    assert_eq!((l.latitude, l.visible), (Some(32.805), Some(true)));
    assert_eq!(l.status.as_deref(), Some("online"));
    let outside = c
        .locations(&LocationQuery {
            northeast: Some((10.0, 10.0)),
            southwest: Some((9.0, 9.0)),
            ..LocationQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(outside.total, 0);
    let active = c
        .locations(&LocationQuery {
            northeast: Some((10.0, 10.0)),
            southwest: Some((9.0, 9.0)),
            filter: Some(LocationFilter::Active),
            ..LocationQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(active.locations[0].visible, Some(false));
    let everyone = c
        .locations(&LocationQuery {
            filter: Some(LocationFilter::None),
            ..LocationQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(everyone.total, 2);
    let named = c
        .locations(&LocationQuery {
            filter: Some(LocationFilter::None),
            name: Some("truck 2".into()),
            max: Some(5),
            start: Some(0),
            ..LocationQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(named.locations[0].username.as_deref(), Some("driver2"));

    // One user: the last report, or the history.
    let last = c
        .user_locations("driver1", &UserLocationQuery::default())
        .await
        .unwrap();
    assert_eq!(last.total, 1);
    assert_eq!(last.locations[0].speed, Some(20.0));
    assert!(last.locations[0].id.is_some() && last.locations[0].username.is_none());
    let history = c
        .user_locations(
            "driver1",
            &UserLocationQuery {
                history: true,
                start_ts: Some(work::now() - 3600),
                end_ts: Some(work::now() + 60),
                speed_units: Some(SpeedUnits::Mph),
                ..UserLocationQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(history.total, 3);
    let mph = history.locations[0].speed.unwrap();
    assert!((mph - 40.0 * 0.621_371).abs() < 1e-6, "{mph}");
    let page = c
        .user_locations(
            "driver1",
            &UserLocationQuery {
                history: true,
                speed_units: Some(SpeedUnits::Kmh),
                start: Some(1),
                max: Some(1),
                ..UserLocationQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!((page.total, page.returned), (3, 1));
    assert_eq!(page.locations[0].speed, Some(55.0));
    let geo = c
        .user_locations_geojson("driver1", &UserLocationQuery::default())
        .await
        .unwrap();
    assert_eq!(geo["locations"]["type"], "FeatureCollection");
    let features = geo["locations"]["features"].as_array().unwrap();
    assert_eq!(features.len(), 3);
    assert_eq!(features[2]["geometry"]["coordinates"][1], 32.805);
    assert_eq!(
        code(
            &c.user_locations("ghost", &UserLocationQuery::default())
                .await
                .unwrap_err()
        ),
        Some(404)
    );
    sim.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn reads_are_retried_and_writes_that_may_have_happened_are_not() {
    let sim = work::sim(0).await;
    let c = work::admin(&sim).await;
    sim.clear_calls();
    // A read whose answer breaks off twice is asked a third time.
    sim.fail("channel/get", WorkFault::Break, 2);
    let channels = c.channels(&ChannelQuery::default()).await.unwrap();
    assert_eq!(channels.len(), 2);
    let gets = sim
        .calls()
        .iter()
        .filter(|c| c.method == "channel/get")
        .count();
    assert_eq!(gets, 3);
    // So is history/getmetadata, a POST that only reads.
    sim.fail("history/getmetadata", WorkFault::Break, 1);
    assert_eq!(
        c.metadata(&MetadataQuery::default()).await.unwrap().total,
        6
    );
    // Past the retries, the read fails as a network error.
    sim.fail("channel/get", WorkFault::Break, 4);
    let e = c.channels(&ChannelQuery::default()).await.unwrap_err();
    assert!(
        matches!(
            e,
            WorkError::Network {
                delivery: Delivery::MaybeSent,
                write: false,
                ..
            }
        ),
        "{e:?}"
    );

    // A write whose answer breaks off is not sent again, and says so: here it happened.
    sim.clear_calls();
    sim.fail("channel/add", WorkFault::Break, 1);
    let e = c
        .add_channel(&NewChannel {
            name: "Once".into(),
            ..NewChannel::default()
        })
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(text.contains("may or may not have been made"), "{text}");
    assert!(text.starts_with("channel/add: "), "{text}");
    assert_eq!(sim.calls().len(), 1, "{:?}", sim.calls());
    assert!(sim.data().channels.contains_key("Once"));

    // Nothing listening: the connection cannot be made, so nothing was sent; even a
    // write is tried again, and the error does not claim it may have happened.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut dead = WorkClient::new(&format!("http://127.0.0.1:{port}"), work::options()).unwrap();
    let e = dead.get_token().await.unwrap_err();
    assert!(
        matches!(
            e,
            WorkError::Network {
                delivery: Delivery::NotSent,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(!e.to_string().contains("may or may not"), "{e}");
    sim.shutdown(Duration::from_secs(2)).await;
}
