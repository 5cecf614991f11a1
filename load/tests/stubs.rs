//! The stub services answer the IdP's wire contracts over real HTTP.

#[tokio::test]
async fn the_stubs_confirm_synthetic_citizens_and_keep_sms() {
    let dir = std::env::temp_dir().join(format!("emta-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let out = dir.join("citizens.json");
    let (addr, citizens, _h) = load::stubs::serve(
        ([127, 0, 0, 1], 0).into(),
        20,
        9,
        Some(&out),
        std::future::pending(),
    )
    .await
    .expect("serve");
    let written: Vec<testkit::FixtureCitizen> =
        serde_json::from_slice(&std::fs::read(&out).expect("file")).expect("json");
    assert_eq!(written, citizens);
    let c = &citizens[0];
    let http = reqwest_client();
    let person: serde_json::Value = http
        .post(format!("http://{addr}/persons/verify"))
        .json(&serde_json::json!({"national_id": c.national_id, "birth_date": c.birth_date}))
        .send()
        .await
        .expect("person")
        .json()
        .await
        .expect("json");
    assert_eq!(person["match"], true);
    assert_eq!(person["given_name"], c.given_name.as_str());
    let other = &citizens[1];
    let owns: serde_json::Value = http
        .post(format!("http://{addr}/ownership/verify"))
        .json(&serde_json::json!({"national_id": c.national_id, "mobile": other.mobile}))
        .send()
        .await
        .expect("ownership")
        .json()
        .await
        .expect("json");
    assert_eq!(owns["match"], false, "someone else's number");
    let sent = http
        .post(format!("http://{addr}/messages"))
        .json(&serde_json::json!({"to": "+989100000000", "text": "code 123456"}))
        .send()
        .await
        .expect("sms");
    assert_eq!(sent.status().as_u16(), 202);
    let outbox: serde_json::Value = http
        .get(format!("http://{addr}/outbox?to=09100000000"))
        .send()
        .await
        .expect("outbox")
        .json()
        .await
        .expect("json");
    assert_eq!(outbox[0]["text"], "code 123456");
    let _ = std::fs::remove_dir_all(&dir);
}

fn reqwest_client() -> reqwest::Client {
    reqwest::Client::new()
}
