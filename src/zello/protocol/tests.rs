//! Protocol tests built from the spec's own JSON examples.

use super::*;
use serde_json::json;

fn cmd(text: &str) -> Command {
    match Command::decode(text).unwrap() {
        Incoming::Command(c) => c,
        other => panic!("not a command: {other:?}"),
    }
}

fn event(text: &str) -> Event {
    match ServerMessage::decode(text).unwrap() {
        ServerMessage::Event(e) => e,
        other => panic!("not an event: {other:?}"),
    }
}

fn reply(text: &str) -> Reply {
    match ServerMessage::decode(text).unwrap() {
        ServerMessage::Reply(r) => r,
        other => panic!("not a reply: {other:?}"),
    }
}

/// Our encoding of a command equals the spec example, as JSON values (key order aside).
fn assert_encodes_to(c: &Command, spec: &str) {
    let ours: Value = serde_json::from_str(&c.to_json()).unwrap();
    let theirs: Value = serde_json::from_str(spec).unwrap();
    assert_eq!(ours, theirs);
}

const LOGON: &str = r#"{
"command": "logon",
"seq": 1,
"auth_token": "[json web token]",
"username": "sherlock",
"password": "secret",
"channels": ["Baker Street 221B", "Reichenbach Falls"]
}"#;

#[test]
fn spec_logon() {
    let Command::Logon(l) = cmd(LOGON) else {
        panic!()
    };
    assert_eq!(l.seq, Some(1));
    assert_eq!(l.username.as_deref(), Some("sherlock"));
    assert_eq!(l.password.as_deref(), Some("secret"));
    assert_eq!(l.auth_token.as_deref(), Some("[json web token]"));
    assert_eq!(l.all_channels(), ["Baker Street 221B", "Reichenbach Falls"]);
    assert_encodes_to(&Command::Logon(l), LOGON);
}

#[test]
fn logon_every_field_and_singular_channel() {
    let text = r#"{"command":"logon","seq":4,"refresh_token":"r","username":"u","password":"p",
        "channel":"Old","channels":["New","Old"],"listen_only":true,"version":"1.2",
        "platform_type":"linux","platform_name":"Zello Radio Gateway","extra":42}"#;
    let Command::Logon(l) = cmd(text) else {
        panic!()
    };
    assert_eq!(l.refresh_token.as_deref(), Some("r"));
    assert_eq!(l.listen_only, Some(true));
    assert_eq!(l.version.as_deref(), Some("1.2"));
    assert_eq!(l.platform_type.as_deref(), Some("linux"));
    assert_eq!(l.platform_name.as_deref(), Some("Zello Radio Gateway"));
    assert_eq!(l.all_channels(), ["New", "Old"]);
    let only_singular = cmd(r#"{"command":"logon","seq":1,"channel":"Dispatch"}"#);
    let Command::Logon(l) = only_singular else {
        panic!()
    };
    assert_eq!(l.all_channels(), ["Dispatch"]);
}

#[test]
fn logon_debug_hides_secrets() {
    let Command::Logon(mut l) = cmd(LOGON) else {
        panic!()
    };
    l.refresh_token = Some("refresh-secret".into());
    let shown = format!("{:?}", Command::Logon(l));
    assert!(!shown.contains("secret\""), "{shown}");
    assert!(!shown.contains("refresh-secret"), "{shown}");
    assert!(!shown.contains("json web token"), "{shown}");
    assert!(shown.contains("sherlock"));
}

const START: &str = r#"{
"command": "start_stream",
"seq": 2,
"channel": "Baker Street 221B",
"type": "audio",
"codec": "opus",
"codec_header": "gD4BPA==",
"packet_duration": 20
}"#;

const START_FOR: &str = r#"{
"command": "start_stream",
"seq": 2,
"channel": "Baker Street 221B",
"type": "audio",
"codec": "opus",
"codec_header": "gD4BPA==",
"packet_duration": 20,
"for": "mrs.hudson"
}"#;

#[test]
fn spec_start_stream_both_forms() {
    let Command::StartStream(s) = cmd(START) else {
        panic!()
    };
    assert_eq!(s.channel, "Baker Street 221B");
    assert_eq!(s.recipient, None);
    assert_eq!(
        CodecHeader::from_base64(&s.codec_header).unwrap(),
        CodecHeader::default()
    );
    assert_encodes_to(&Command::StartStream(s), START);

    let Command::StartStream(s) = cmd(START_FOR) else {
        panic!()
    };
    assert_eq!(s.recipient.as_deref(), Some("mrs.hudson"));
    assert_encodes_to(&Command::StartStream(s), START_FOR);
}

#[test]
fn start_stream_builder_matches_spec_shape() {
    let mut c = Command::StartStream(StartStream::audio(
        "Baker Street 221B",
        CodecHeader::default(),
        None,
    ));
    c.set_seq(2);
    // Our packet_duration is the real one (60 ms); the spec example says 20 with the same
    // header, so compare everything else.
    let mut v: Value = serde_json::from_str(&c.to_json()).unwrap();
    assert_eq!(v["packet_duration"], 60);
    v["packet_duration"] = json!(20);
    assert_eq!(v, serde_json::from_str::<Value>(START).unwrap());
}

#[test]
fn spec_stop_stream() {
    let text =
        r#"{"command":"stop_stream","seq":3,"stream_id":22695,"channel":"Baker Street 221B"}"#;
    let c = cmd(text);
    assert_eq!(
        c,
        Command::StopStream(StopStream {
            seq: Some(3),
            stream_id: 22695,
            channel: Some("Baker Street 221B".into())
        })
    );
    assert_encodes_to(&c, text);
}

#[test]
fn spec_send_image() {
    let text = r#"{
"command": "send_image",
"seq": 2,
"channel": "Reichenbach Falls",
"type": "jpeg",
"source": "camera",
"width": 1279,
"height": 959,
"thumbnail_content_length": 10616,
"content_length": 183716
}"#;
    let c = cmd(text);
    let Command::SendImage(i) = &c else { panic!() };
    assert_eq!(i.thumbnail_content_length, 10616);
    assert_eq!(i.content_length, 183716);
    assert_eq!(i.width, Some(1279));
    assert_eq!(i.source.as_deref(), Some("camera"));
    assert_encodes_to(&c, text);
}

#[test]
fn spec_send_text_message() {
    let text = r#"{
"command": "send_text_message",
"seq": 3,
"channel": "Reichenbach Falls",
"text": "Where are you?",
"for": "holmes"
}"#;
    let c = cmd(text);
    let Command::SendTextMessage(t) = &c else {
        panic!()
    };
    assert_eq!(t.recipient.as_deref(), Some("holmes"));
    assert_encodes_to(&c, text);
}

#[test]
fn spec_send_location() {
    let text = r#"{
"command": "send_location",
"seq": 3,
"channel": "Reichenbach Falls",
"latitude": 46.714475,
"longitude": 8.1806319,
"accuracy": 10,
"formatted_address": "Hausenstrasse 34, 3860 Meiringen, Switzerland",
"for": "watson"
}"#;
    let c = cmd(text);
    let Command::SendLocation(l) = &c else {
        panic!()
    };
    assert_eq!(l.latitude, 46.714475);
    assert_eq!(l.accuracy, Some(10.0));
    assert_eq!(l.recipient.as_deref(), Some("watson"));
    // accuracy is written as 10.0 by us; compare as numbers.
    let ours: Value = serde_json::from_str(&c.to_json()).unwrap();
    assert_eq!(ours["accuracy"].as_f64(), Some(10.0));
    assert_eq!(
        ours["formatted_address"],
        json!("Hausenstrasse 34, 3860 Meiringen, Switzerland")
    );
    assert_eq!(ours["for"], json!("watson"));
}

#[test]
fn spec_replies() {
    let r = reply(r#"{"seq": 1, "success": true, "refresh_token": "[refresh json web token]"}"#);
    assert!(r.success);
    assert_eq!(r.refresh_token.as_deref(), Some("[refresh json web token]"));
    assert_eq!(r.failure(), None);

    let r = reply(r#"{"seq": 1, "error": "not authorized"}"#);
    assert_eq!(r.failure(), Some(ErrorCode::NotAuthorized));

    let r = reply(r#"{"seq": 2, "success": true, "stream_id": 22695}"#);
    assert_eq!(r.stream_id, Some(22695));
    let r = reply(r#"{"seq": 2, "success": true, "image_id": 22695}"#);
    assert_eq!(r.image_id, Some(22695));
    let r = reply(r#"{"seq": 3, "success": true}"#);
    assert_eq!(r.seq, 3);
    // A reply without success or error is a failure, not a success.
    assert!(reply(r#"{"seq": 9}"#).failure().is_some());
    // Our own replies decode back.
    let ours = Reply {
        stream_id: Some(5),
        ..Reply::ok(7)
    };
    assert_eq!(reply(&ours.to_json()), ours);
    assert_eq!(
        reply(&Reply::err(8, ErrorCode::Kicked).to_json()).failure(),
        Some(ErrorCode::Kicked)
    );
}

#[test]
fn spec_on_channel_status() {
    let e = event(
        r#"{"command": "on_channel_status","channel": "test","status": "online","users_online": 2,
        "images_supported": true,"texting_supported": true,"locations_supported": true}"#,
    );
    let Event::ChannelStatus(s) = e else { panic!() };
    assert_eq!(s.status, ChannelState::Online);
    assert_eq!(s.users_online, 2);
    assert!(s.images_supported && s.texting_supported && s.locations_supported);

    let e = event(
        r#"{"command":"on_channel_status","channel":"test","status":"offline",
        "error":"no access","error_type":"configuration"}"#,
    );
    let Event::ChannelStatus(s) = e else { panic!() };
    assert_eq!(s.status, ChannelState::Offline);
    assert_eq!(s.error.as_deref(), Some("no access"));
    assert_eq!(s.error_type.as_deref(), Some("configuration"));
    assert!(!s.images_supported);

    let Event::ChannelStatus(s) =
        event(r#"{"command":"on_channel_status","channel":"x","status":"connecting"}"#)
    else {
        panic!()
    };
    assert_eq!(s.status, ChannelState::Unknown);
}

#[test]
fn spec_on_stream_start_and_stop() {
    let e = event(
        r#"{"command": "on_stream_start","type": "audio","codec": "opus","codec_header": "gD4BPA==",
        "packet_duration": 20,"stream_id": 22695,"channel": "test","from": "alex","for": "jim"}"#,
    );
    let Event::StreamStart(s) = &e else { panic!() };
    assert_eq!(s.stream_id, 22695);
    assert_eq!(s.from, "alex");
    assert_eq!(s.recipient.as_deref(), Some("jim"));
    assert_eq!(s.packet_duration, 20);
    assert_eq!(event(&e.to_json()), e);

    let e = event(r#"{"command": "on_stream_stop","stream_id": 22695}"#);
    assert_eq!(e, Event::StreamStop(StreamStop { stream_id: 22695 }));
    // `for: false` and a fractional packet_duration are accepted.
    let Event::StreamStart(s) = event(
        r#"{"command":"on_stream_start","codec_header":"gD4BPA==","packet_duration":2.5,
        "stream_id":1,"channel":"c","from":"a","for":false}"#,
    ) else {
        panic!()
    };
    assert_eq!(s.recipient, None);
    assert_eq!(s.packet_duration, 3);
}

#[test]
fn spec_on_error() {
    let e = event(r#"{"command": "on_error","error": "server closed connection"}"#);
    assert_eq!(
        e,
        Event::Error(ServerError {
            error: ErrorCode::ServerClosedConnection
        })
    );
}

#[test]
fn spec_on_image_uses_ct_and_for_false() {
    let e = event(
        r#"{"command": "on_image","channel": "test","from":"alex","for": false,"message_id": 59725,
        "source": "camera","width": 591,"height": 1280,"ct": "jpeg"}"#,
    );
    let Event::Image(i) = &e else { panic!() };
    assert_eq!(i.kind, "jpeg");
    assert_eq!(i.recipient, None);
    assert_eq!(i.message_id, 59725);
    assert_eq!(i.height, Some(1280));
    assert_eq!(event(&e.to_json()), e);
    let v: Value = serde_json::from_str(&e.to_json()).unwrap();
    assert_eq!(v["for"], json!(false));
}

#[test]
fn spec_on_text_message() {
    let e = event(
        r#"{"command": "on_text_message","channel": "test","from": "alex","for": false,
        "message_id": 16777216,"text": "Hello Zello!"}"#,
    );
    let Event::TextMessage(t) = &e else { panic!() };
    assert_eq!(t.text, "Hello Zello!");
    assert_eq!(t.recipient, None);
    assert_eq!(t.message_id, 16777216);
    assert_eq!(event(&e.to_json()), e);
    let Event::TextMessage(t) = event(
        r#"{"command":"on_text_message","channel":"c","from":"a","for":"bob","message_id":1,"text":"x"}"#,
    ) else {
        panic!()
    };
    assert_eq!(t.recipient.as_deref(), Some("bob"));
}

#[test]
fn spec_on_location_uses_rgl() {
    let e = event(
        r#"{"command": "on_location","channel": "test","from": "alex","message_id": 16777217,
        "latitude": 30.27386375722625,"longitude": -97.76014980128478,"rgl": "1317 W 6th St, Austin"}"#,
    );
    let Event::Location(l) = &e else { panic!() };
    assert_eq!(
        l.formatted_address.as_deref(),
        Some("1317 W 6th St, Austin")
    );
    assert_eq!(l.longitude, -97.76014980128478);
    assert_eq!(event(&e.to_json()), e);
}

#[test]
fn unknown_commands_and_events_are_kept_raw() {
    let e = event(r#"{"command":"on_transcription","stream_id":5,"text":"hi"}"#);
    let Event::Unknown { command, raw } = e else {
        panic!()
    };
    assert_eq!(command, "on_transcription");
    assert_eq!(raw["stream_id"], 5);

    let Incoming::Unknown { command, seq, .. } =
        Command::decode(r#"{"command":"dance","seq":11}"#).unwrap()
    else {
        panic!()
    };
    assert_eq!((command.as_str(), seq), ("dance", Some(11)));
    assert_eq!(
        cmd(r#"{"command":"keepalive"}"#),
        Command::Keepalive { seq: None }
    );
}

#[test]
fn bad_input_is_typed() {
    for text in ["", "{", "[1,2", "nul", "{\"command\":}"] {
        let e = ServerMessage::decode(text).unwrap_err();
        assert!(matches!(e, ProtocolError::InvalidJson(_)), "{text}: {e:?}");
        assert_eq!(e.server_code(), ErrorCode::InvalidJson);
    }
    for text in ["{}", "[]", "42", "{\"hello\":1}", "{\"command\":5}"] {
        let e = ServerMessage::decode(text).unwrap_err();
        assert!(matches!(e, ProtocolError::NotAMessage(_)), "{text}: {e:?}");
        assert_eq!(e.server_code(), ErrorCode::InvalidRequest);
    }
    // A known event with a wrong-typed required field.
    let e = ServerMessage::decode(r#"{"command":"on_stream_stop","stream_id":"x"}"#).unwrap_err();
    assert!(matches!(e, ProtocolError::BadFields { .. }));
    // A client command missing a required field.
    let e = Command::decode(r#"{"command":"start_stream","seq":2,"channel":"c"}"#).unwrap_err();
    assert_eq!(e.server_code(), ErrorCode::NotEnoughParams);
    // stop_stream before the id is known goes out as null: "not enough params".
    let e = Command::decode(r#"{"command":"stop_stream","seq":3,"stream_id":null}"#).unwrap_err();
    assert_eq!(e.server_code(), ErrorCode::NotEnoughParams);
    let e = Command::decode(r#"{"command":"stop_stream","seq":3,"stream_id":"x"}"#).unwrap_err();
    assert_eq!(e.server_code(), ErrorCode::InvalidRequest);
    // Stream ids beyond u32 are refused, not wrapped.
    assert!(
        ServerMessage::decode(r#"{"command":"on_stream_stop","stream_id":4294967296}"#).is_err()
    );
    // A negative packet_duration is refused.
    assert!(
        ServerMessage::decode(
            r#"{"command":"on_stream_start","stream_id":1,"packet_duration":-5}"#
        )
        .is_err()
    );
}
