#!/bin/bash
# Runs inside the LocalStack container once it is ready (ready.d hook; awslocal is there).
# Creates: the snapshot bucket, one Lambda per migration task whose handler exists, the
# migration state machine from the SAME statemachine/migration.asl.json (the ${...} ARNs
# filled in here, as infra/migration.py does in AWS), and the alarm -> state machine rule.
set -euo pipefail
REGION=ap-northeast-2
ACCOUNT=000000000000
SRC=/opt/hotshard
BUCKET=hotshard-snapshots-${ACCOUNT}-${REGION}
STATES="DetectHotSymbol ProvisionNewInstance PauseRouting WaitForDrain TransferSnapshot SwitchRouting ReplayPendingOrders Cleanup Rollback"

awslocal s3 mb "s3://${BUCKET}"

awslocal iam create-role --role-name hotshard-local \
  --assume-role-policy-document '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":["lambda.amazonaws.com","states.amazonaws.com","events.amazonaws.com"]},"Action":"sts:AssumeRole"}]}' >/dev/null
ROLE=arn:aws:iam::${ACCOUNT}:role/hotshard-local

# One zip for every task: the shared package plus statemachine/, as the CDK asset is built.
ZIP=/tmp/hotshard-tasks.zip
(cd "$SRC" && python3 -m zipfile -c "$ZIP" hotshard statemachine)

ASL=$(cat "$SRC/statemachine/migration.asl.json")
for state in $STATES; do
  module=$(echo "$state" | sed -E 's/([a-z])([A-Z])/\1_\2/g' | tr '[:upper:]' '[:lower:]')
  arn=arn:aws:lambda:${REGION}:${ACCOUNT}:function:hotshard-${module//_/-}
  if [ -f "$SRC/statemachine/tasks/${module}.py" ]; then
    awslocal lambda create-function --function-name "hotshard-${module//_/-}" \
      --runtime python3.11 --handler "statemachine.tasks.${module}.handler" \
      --zip-file "fileb://${ZIP}" --role "$ROLE" --timeout 300 \
      --environment "Variables={SNAPSHOT_BUCKET=${BUCKET},AWS_REGION=${REGION}}" >/dev/null
  else
    echo "hotshard: statemachine/tasks/${module}.py does not exist yet; ${state} will fail"
  fi
  ASL=${ASL//\$\{${state}FunctionArn\}/$arn}
done

SM=$(awslocal stepfunctions create-state-machine --name hotshard-migration \
  --role-arn "$ROLE" --definition "$ASL" --query stateMachineArn --output text)

# The engines' metrics never reach LocalStack (no engine runs in it): set the alarm state
# by hand to see the rule start an execution (README.md).
awslocal cloudwatch put-metric-alarm --alarm-name hotshard-engine-cpu-high \
  --namespace hotshard --metric-name ProcessCpu --statistic Maximum --period 60 \
  --evaluation-periods 1 --threshold 85 --comparison-operator GreaterThanThreshold
awslocal events put-rule --name hotshard-hot-engine --event-pattern \
  '{"source":["aws.cloudwatch"],"detail-type":["CloudWatch Alarm State Change"],"detail":{"state":{"value":["ALARM"]}}}' >/dev/null
awslocal events put-targets --rule hotshard-hot-engine \
  --targets "Id=migration,Arn=${SM},RoleArn=${ROLE}" >/dev/null
echo "hotshard: state machine ${SM} ready"
