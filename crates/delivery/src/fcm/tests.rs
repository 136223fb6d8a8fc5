use super::*;

#[test]
fn classifies_fcm_errors() {
    let body = |status: &str, code: &str| {
        format!(
            r#"{{"error":{{"code":404,"message":"m","status":"{status}","details":[{{"@type":"type.googleapis.com/google.firebase.fcm.v1.SendError","errorCode":"{code}"}}]}}}}"#
        )
    };
    assert!(matches!(
        classify(404, &body("NOT_FOUND", "UNREGISTERED"), None),
        SendError::InvalidToken { .. }
    ));
    assert!(matches!(
        classify(400, &body("INVALID_ARGUMENT", "INVALID_ARGUMENT"), None),
        SendError::Rejected { .. }
    ));
    let e = classify(
        429,
        &body("RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED"),
        Some(Duration::from_secs(3)),
    );
    assert_eq!(
        e,
        SendError::Transient {
            code: "QUOTA_EXCEEDED".into(),
            detail: "m".into(),
            retry_after: Some(Duration::from_secs(3))
        }
    );
    // Not JSON at all (an HTML error page from a proxy): 5xx is retried, anything else is
    // the deployment's (a wrong endpoint), never final.
    assert!(matches!(
        classify(503, "<html>busy</html>", None),
        SendError::Transient { .. }
    ));
    assert!(matches!(
        classify(404, "<html>Not Found</html>", None),
        SendError::Deployment { .. }
    ));
    assert_eq!(classify(418, "", None).code(), "HTTP_418");
}

#[test]
fn only_a_targets_own_error_is_final() {
    let google = |http: u16, status: &str| {
        format!(r#"{{"error":{{"code":{http},"message":"m","status":"{status}"}}}}"#)
    };
    let fcm = |http: u16, code: &str, message: &str| {
        format!(
            r#"{{"error":{{"code":{http},"message":"{message}","status":"X","details":[{{"@type":"type.googleapis.com/google.firebase.fcm.v1.SendError","errorCode":"{code}"}}]}}}}"#
        )
    };
    // The key lacks the permission, the project is wrong: the deployment's, not final.
    let e = classify(403, &google(403, "PERMISSION_DENIED"), None);
    assert!(matches!(&e, SendError::Deployment { code, .. } if code == "PERMISSION_DENIED"));
    assert!(matches!(
        classify(404, &google(404, "NOT_FOUND"), None),
        SendError::Deployment { .. }
    ));
    // The access token is bad: retried with a new one (and only then is it dropped).
    let e = classify(401, &google(401, "UNAUTHENTICATED"), None);
    assert!(access_token_refused(401, &e), "{e:?}");
    // APNs/web push credentials: the deployment's; the OAuth token stays.
    let e = classify(401, &fcm(401, "THIRD_PARTY_AUTH_ERROR", "m"), None);
    assert!(matches!(e, SendError::Deployment { .. }));
    assert!(!access_token_refused(401, &e));
    assert!(matches!(
        classify(403, &fcm(403, "SENDER_ID_MISMATCH", "m"), None),
        SendError::SenderMismatch { .. }
    ));
    // INVALID_ARGUMENT: the token's when it names the token, else the message's.
    let bad_token = fcm(
        400,
        "INVALID_ARGUMENT",
        "The registration token is not a valid FCM registration token",
    );
    assert!(matches!(
        classify(400, &bad_token, None),
        SendError::InvalidToken { .. }
    ));
    let by_field = r#"{"error":{"code":400,"message":"Invalid value","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.SendError","errorCode":"INVALID_ARGUMENT"},{"@type":"type.googleapis.com/google.rpc.BadRequest","fieldViolations":[{"field":"message.token","description":"bad"}]}]}}"#;
    assert!(matches!(
        classify(400, by_field, None),
        SendError::InvalidToken { .. }
    ));
    let by_fid = by_field.replace("message.token", "message.fid");
    assert!(matches!(
        classify(400, &by_fid, None),
        SendError::InvalidToken { .. }
    ));
    let by_other = by_field.replace("message.token", "message.android.ttl");
    assert!(matches!(
        classify(400, &by_other, None),
        SendError::Rejected { .. }
    ));
    assert!(matches!(
        classify(
            400,
            &fcm(
                400,
                "INVALID_ARGUMENT",
                "Invalid value at 'message.data[0].value'"
            ),
            None
        ),
        SendError::Rejected { .. }
    ));
}

#[test]
fn a_2xx_is_a_send_only_with_a_message_of_the_keys_project() {
    let prefix = "projects/p1/messages/";
    let sent = accepted(200, r#"{"name":"projects/p1/messages/0:1"}"#, prefix);
    assert_eq!(sent.unwrap().name, "projects/p1/messages/0:1");
    for (status, body) in [
        (200, "<html>blocked</html>"),
        (204, ""),
        (200, "{}"),
        (200, r#"{"name":""}"#),
        (200, r#"{"name":"projects/p1/messages/"}"#),
        (200, r#"{"name":"projects/p2/messages/1"}"#),
        (200, r#"{"name":"projects/p1/messages2/1"}"#),
    ] {
        let e = accepted(status, body, prefix).unwrap_err();
        assert!(
            matches!(&e, SendError::Deployment { code, .. } if *code == format!("HTTP_{status}")),
            "{status} {body}: {e:?}"
        );
    }
}
