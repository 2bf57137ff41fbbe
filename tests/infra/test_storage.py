from aws_cdk.assertions import Match, Template


def test_snapshot_bucket_is_encrypted_versioned_private_and_expires(
    templates: dict[str, Template],
) -> None:
    templates["HotshardStorage"].has_resource_properties(
        "AWS::S3::Bucket",
        {
            "BucketName": "hotshard-snapshots-123456789012-ap-northeast-2",
            "BucketEncryption": {
                "ServerSideEncryptionConfiguration": [
                    {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
                ]
            },
            "VersioningConfiguration": {"Status": "Enabled"},
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            },
            "LifecycleConfiguration": {
                "Rules": [
                    Match.object_like(
                        {"Prefix": "snapshots/", "ExpirationInDays": 7, "Status": "Enabled"}
                    )
                ]
            },
            "LoggingConfiguration": Match.object_like({"LogFilePrefix": "snapshots/"}),
        },
    )


def test_buckets_refuse_plain_http(templates: dict[str, Template]) -> None:
    policies = templates["HotshardStorage"].find_resources("AWS::S3::BucketPolicy")
    assert len(policies) == 2
    for policy in policies.values():
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        assert any(
            s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
            for s in statements
        )
