use super::*;

#[test]
fn rfc_7677_vector() {
    let m = Mechanism::Sha256;
    let salt = BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
    let salted = salt_password(m, "pencil", &salt, 4096);
    let credential = Credential::from_salted(m, &salted, salt, 4096);
    let nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    let prefix =
        format!("n=user,r=rOprNGfwEbeRWgbNEkqO,r={nonce},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096");
    let final_message = format!("c=biws,r={nonce},p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
    let challenged = Challenged {
        mechanism: m,
        user: "user".into(),
        credential,
        nonce: nonce.into(),
        auth_prefix: prefix,
        gs2_header: "n,,".into(),
    };
    let answer = last(&final_message, &challenged).unwrap();
    assert_eq!(
        String::from_utf8(answer).unwrap(),
        "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
    );
    let wrong = final_message.replace("p=dH", "p=eH");
    assert_eq!(last(&wrong, &challenged), Err(ScramError::Credentials));
}

#[test]
fn a_whole_exchange_for_both_mechanisms_and_a_wrong_password() {
    for m in Mechanism::ALL {
        let credential = Credential::from_password(m, "s3cret", 4096);
        for (password, ok) in [("s3cret", true), ("guess", false)] {
            let mut server = ServerExchange::new(m);
            let (mut client, first) = ClientExchange::start(m, "al,ice", password);
            assert!(first.starts_with(b"n,,n=al=2Cice,r="));
            let Step::Challenge(challenge) = server
                .step(&first, |user| {
                    assert_eq!(user, "al,ice");
                    Some(credential.clone())
                })
                .unwrap()
            else {
                panic!("a challenge first")
            };
            let reply = client.last(&challenge).unwrap();
            match server.step(&reply, |_| unreachable!()) {
                Ok(Step::Authenticated { user, last }) => {
                    assert!(ok);
                    assert_eq!(user, "al,ice");
                    client.verify(&last).expect("the server proves its key");
                    assert!(client.verify(b"v=AAAA").is_err());
                }
                Err(e) => {
                    assert!(!ok);
                    assert_eq!(e, ScramError::Credentials);
                }
                Ok(Step::Challenge(_)) => panic!("two challenges"),
            }
            assert!(matches!(
                server.step(b"again", |_| None),
                Err(ScramError::Over)
            ));
        }
        assert!(credential.matches_password(m, "s3cret"));
        assert_eq!(
            Credential::from_text(&credential.to_text()),
            Some(credential.clone())
        );
        assert_eq!(Credential::from_text("a:1:b"), None);
        assert!(!credential.matches_password(m, "s3cret "));
    }
}

#[test]
fn a_client_refuses_a_hostile_challenge() {
    let (mut client, _) = ClientExchange::start(Mechanism::Sha256, "u", "p");
    for bad in [
        &b"r=someone-elses,s=c2FsdA==,i=4096"[..],
        b"s=c2FsdA==,i=4096",
        b"r=,s=c2FsdA==,i=0",
    ] {
        assert!(client.last(bad).is_err(), "{bad:?}");
    }
    let nonce = String::from_utf8(client.bare.clone().into_bytes()).unwrap();
    let ours = nonce.rsplit_once("r=").unwrap().1;
    let spin = format!("r={ours}x,s=c2FsdA==,i=4000000000");
    assert!(client.last(spin.as_bytes()).is_err(), "too many iterations");
}

#[test]
fn unknown_users_and_malformed_messages_are_refused() {
    let m = Mechanism::Sha512;
    let refused = |message: &[u8]| ServerExchange::new(m).step(message, |_| None).err();
    assert_eq!(refused(b"n,,n=bob,r=abc"), Some(ScramError::Credentials));
    for bad in [
        &b""[..],
        b"p=tls-unique,,n=bob,r=abc",
        b"n,,n=bob",
        b"n,,n=b=ob,r=abc",
        b"n,a=eve,n=bob,r=abc",
        b"\xff\xfe",
    ] {
        assert!(
            matches!(refused(bad), Some(ScramError::Malformed(_))),
            "{bad:?}"
        );
    }
    let long = vec![b'a'; MESSAGE_BYTES_MAX + 1];
    assert_eq!(refused(&long), Some(ScramError::TooLong(long.len())));
}

#[test]
fn plain_messages() {
    assert_eq!(parse_plain(b"\0alice\0pw"), Ok(("alice", "pw")));
    assert_eq!(parse_plain(b"alice\0alice\0pw"), Ok(("alice", "pw")));
    assert!(parse_plain(b"eve\0alice\0pw").is_err());
    assert!(parse_plain(b"\0alice").is_err());
    assert!(parse_plain(b"\0alice\0pw\0x").is_err());
    assert!(parse_plain(b"\0\0pw").is_err());
}

#[test]
fn a_client_login_drives_plain_and_scram_to_the_end() {
    let (mut plain, message) = ClientLogin::start("PLAIN", "alice", "pw").unwrap();
    assert_eq!(parse_plain(&message), Ok(("alice", "pw")));
    assert_eq!(plain.answer(b""), Ok(None));
    assert!(ClientLogin::start("GSSAPI", "alice", "pw").is_none());

    let m = Mechanism::Sha512;
    let credential = Credential::from_password(m, "pw", 4096);
    let (mut client, mut message) = ClientLogin::start(m.name(), "alice", "pw").unwrap();
    let mut server = ServerExchange::new(m);
    let mut sent = 0;
    loop {
        sent += 1;
        let answer = match server.step(&message, |_| Some(credential.clone())).unwrap() {
            Step::Challenge(challenge) => challenge,
            Step::Authenticated { last, .. } => last,
        };
        match client.answer(&answer).unwrap() {
            Some(next) => message = next,
            None => break,
        }
    }
    assert_eq!(sent, 2, "client-first and client-final");
    // A server that cannot prove its key is refused.
    let (mut client, first) = ClientLogin::start(m.name(), "alice", "pw").unwrap();
    let mut server = ServerExchange::new(m);
    let Ok(Step::Challenge(challenge)) = server.step(&first, |_| Some(credential.clone())) else {
        panic!("a challenge first")
    };
    client.answer(&challenge).unwrap().expect("client-final");
    assert_eq!(client.answer(b"v=AAAA"), Err(ScramError::ServerProof));
}
