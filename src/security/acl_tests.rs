use super::*;

fn binding(
    resource_type: ResourceType,
    name: &str,
    pattern: PatternType,
    principal: &str,
    operation: Operation,
    permission: Permission,
) -> AclBinding {
    AclBinding {
        resource_type,
        name: name.into(),
        pattern,
        principal: principal.into(),
        host: WILDCARD.into(),
        operation,
        permission,
    }
}

fn on() -> Authorizer {
    Authorizer {
        enabled: true,
        super_users: ["User:admin".to_string()].into(),
        allow_if_no_acl: false,
    }
}

const ALICE: Subject<'static> = Subject {
    principal: "User:alice",
    host: "10.0.0.1",
};
const BOB: Subject<'static> = Subject {
    principal: "User:bob",
    host: "10.0.0.2",
};

#[test]
fn literal_prefixed_and_wildcard_names_match_their_resources() {
    use Operation::*;
    use PatternType::*;
    use Permission::*;
    use ResourceType::*;
    let acls = Acls::new([
        binding(Topic, "orders", Literal, "User:alice", Read, Allow),
        binding(Topic, "logs-", Prefixed, "User:alice", Write, Allow),
        binding(Group, WILDCARD, Literal, "User:*", Read, Allow),
        binding(Topic, "payments", Literal, "User:alice", All, Allow),
    ]);
    let a = on();
    assert!(a.allows(&acls, ALICE, Read, Topic, "orders"));
    assert!(!a.allows(&acls, ALICE, Write, Topic, "orders"));
    assert!(!a.allows(&acls, BOB, Read, Topic, "orders"));
    assert!(a.allows(&acls, ALICE, Write, Topic, "logs-app"));
    assert!(!a.allows(&acls, ALICE, Write, Topic, "log"));
    assert!(a.allows(&acls, BOB, Read, Group, "any-group"));
    assert!(a.allows(&acls, ALICE, Alter, Topic, "payments"));
    // DESCRIBE is implied by READ, WRITE, DELETE, ALTER; DESCRIBE_CONFIGS by ALTER_CONFIGS.
    assert!(a.allows(&acls, ALICE, Describe, Topic, "orders"));
    assert!(a.allows(&acls, ALICE, Describe, Topic, "logs-x"));
    assert!(!a.allows(&acls, ALICE, DescribeConfigs, Topic, "orders"));
    // Super users and a disabled authorizer allow anything.
    let admin = Subject {
        principal: "User:admin",
        host: "h",
    };
    assert!(a.allows(&acls, admin, Delete, Cluster, CLUSTER));
    assert!(Authorizer::default().allows(&acls, BOB, Delete, Topic, "orders"));
}

#[test]
fn a_write_on_any_topic_is_found() {
    let acls = Acls::new([
        binding(
            ResourceType::Topic,
            "a",
            PatternType::Literal,
            "User:alice",
            Operation::Write,
            Permission::Allow,
        ),
        binding(
            ResourceType::Topic,
            "a",
            PatternType::Literal,
            "User:bob",
            Operation::Write,
            Permission::Allow,
        ),
        binding(
            ResourceType::Topic,
            "a",
            PatternType::Literal,
            "User:bob",
            Operation::Write,
            Permission::Deny,
        ),
    ]);
    let a = on();
    assert!(a.allows_any(&acls, ALICE, Operation::Write, ResourceType::Topic));
    assert!(!a.allows_any(&acls, BOB, Operation::Write, ResourceType::Topic));
    assert!(!a.allows_any(&acls, ALICE, Operation::Write, ResourceType::Group));
}

#[test]
fn deny_wins_and_hosts_count() {
    use Operation::*;
    use PatternType::*;
    use Permission::*;
    use ResourceType::*;
    let mut only_from = binding(Topic, "t", Literal, "User:bob", Read, Allow);
    only_from.host = "10.0.0.9".into();
    let acls = Acls::new([
        binding(Topic, "t", Literal, "User:*", All, Allow),
        binding(Topic, "t", Prefixed, "User:alice", Write, Deny),
        only_from,
    ]);
    let a = on();
    assert!(!a.allows(&acls, ALICE, Write, Topic, "t"));
    assert!(a.allows(&acls, ALICE, Read, Topic, "t"));
    // A denied WRITE does not deny DESCRIBE (denials are not implied).
    assert!(a.allows(&acls, ALICE, Describe, Topic, "t"));
    let deny_all = acls.changed(&[binding(Topic, "t", Literal, "User:*", All, Deny)], &[]);
    assert!(!a.allows(&deny_all, BOB, Describe, Topic, "t"));
}

#[test]
fn with_no_acl_for_a_resource_the_switch_decides() {
    let acls = Acls::new([binding(
        ResourceType::Topic,
        "t",
        PatternType::Literal,
        "User:alice",
        Operation::Read,
        Permission::Allow,
    )]);
    let mut a = on();
    assert!(!a.allows(&acls, BOB, Operation::Read, ResourceType::Topic, "other"));
    a.allow_if_no_acl = true;
    assert!(a.allows(&acls, BOB, Operation::Read, ResourceType::Topic, "other"));
    // A resource with an ACL, none for bob: still refused.
    assert!(!a.allows(&acls, BOB, Operation::Read, ResourceType::Topic, "t"));
}

#[test]
fn filters_match_as_describe_and_delete_need() {
    use PatternType::*;
    let acls = Acls::new([
        binding(
            ResourceType::Topic,
            "orders",
            Literal,
            "User:a",
            Operation::Read,
            Permission::Allow,
        ),
        binding(
            ResourceType::Topic,
            "ord",
            Prefixed,
            "User:b",
            Operation::Write,
            Permission::Allow,
        ),
        binding(
            ResourceType::Topic,
            WILDCARD,
            Literal,
            "User:c",
            Operation::Read,
            Permission::Deny,
        ),
        binding(
            ResourceType::Group,
            "orders",
            Literal,
            "User:a",
            Operation::Read,
            Permission::Allow,
        ),
    ]);
    let count = |filter: AclFilter| acls.bindings().filter(|b| filter.matches(b)).count();
    assert_eq!(count(AclFilter::default()), 4);
    let topic = |name: &str, pattern: PatternType| AclFilter {
        resource_type: Some(ResourceType::Topic),
        name: Some(name.into()),
        pattern: Some(pattern),
        ..AclFilter::default()
    };
    assert_eq!(count(topic("orders", Literal)), 1);
    assert_eq!(count(topic("orders", Any)), 1);
    assert_eq!(count(topic("orders", Match)), 3);
    assert_eq!(count(topic("ord", Prefixed)), 1);
    let by_principal = AclFilter {
        principal: Some("User:a".into()),
        ..AclFilter::default()
    };
    assert_eq!(count(by_principal), 2);
}

#[test]
fn only_whole_bindings_are_valid() {
    let good = binding(
        ResourceType::Cluster,
        CLUSTER,
        PatternType::Literal,
        "User:a",
        Operation::Alter,
        Permission::Allow,
    );
    assert_eq!(validate(&good), Ok(()));
    for bad in [
        AclBinding {
            name: "other".into(),
            ..good.clone()
        },
        AclBinding {
            pattern: PatternType::Match,
            ..good.clone()
        },
        AclBinding {
            operation: Operation::Any,
            ..good.clone()
        },
        AclBinding {
            principal: "alice".into(),
            ..good.clone()
        },
        AclBinding {
            resource_type: ResourceType::Any,
            ..good.clone()
        },
    ] {
        assert!(validate(&bad).is_err(), "{bad:?}");
    }
    assert_eq!(
        Operation::from_name("describe-configs"),
        Some(Operation::DescribeConfigs)
    );
    assert_eq!(
        ResourceType::from_code(5),
        Some(ResourceType::TransactionalId)
    );
}
