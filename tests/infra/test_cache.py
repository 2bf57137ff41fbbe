from aws_cdk.assertions import Match, Template


def test_redis_is_encrypted_and_fails_over(templates: dict[str, Template]) -> None:
    templates["HotshardCache"].has_resource_properties(
        "AWS::ElastiCache::ReplicationGroup",
        {
            "Engine": "redis",
            "CacheNodeType": "cache.r6g.large",
            "ReplicasPerNodeGroup": 1,
            "AutomaticFailoverEnabled": True,
            "MultiAZEnabled": True,
            "AtRestEncryptionEnabled": True,
            "TransitEncryptionEnabled": True,
            "TransitEncryptionMode": "required",
            "SecurityGroupIds": [Match.any_value()],
        },
    )


def test_redis_lives_in_the_private_subnets(templates: dict[str, Template]) -> None:
    groups = templates["HotshardCache"].find_resources("AWS::ElastiCache::SubnetGroup")
    (group,) = groups.values()
    assert len(group["Properties"]["SubnetIds"]) == 3
