// The SAM template: cfn-lint accepts it, and it carries the settings pushq's operation relies on.
import { execFileSync } from 'child_process'
import * as fs from 'fs'
import * as path from 'path'

const root = path.resolve(__dirname, '..')
const templatePath = path.join(root, 'deploy', 'template.yaml')

// cfn-lint's own decoder reads the YAML with its intrinsic-function tags (!Ref, !GetAtt, …).
const template = JSON.parse(
  execFileSync('python3', ['-c', 'import json,sys; from cfnlint.decode import decode; t,_=decode(sys.argv[1]); print(json.dumps(t))', templatePath], {
    encoding: 'utf8',
  }),
)
const resources = template.Resources
const fn = resources.DeliveryFunction.Properties
const mapping = fn.Events.Queue.Properties

test('cfn-lint accepts the template', () => {
  execFileSync('cfn-lint', [templatePath], { encoding: 'utf8' })
})

test('the function is the arm64 bootstrap on provided.al2023', () => {
  expect(resources.DeliveryFunction.Type).toBe('AWS::Serverless::Function')
  expect(fn).toMatchObject({ Runtime: 'provided.al2023', Architectures: ['arm64'], Handler: 'bootstrap' })
  // A literal folder (sam deploy does not package an intrinsic CodeUri), the one the build script writes.
  expect(fn.CodeUri).toBe('../dist/lambda/arm64')
})

test('the SQS mapping: batch 10, no batching window, partial batch failures, capped concurrency', () => {
  expect(mapping).toMatchObject({
    Queue: { 'Fn::GetAtt': ['PushQueue', 'Arn'] },
    BatchSize: 10,
    MaximumBatchingWindowInSeconds: 0,
    FunctionResponseTypes: ['ReportBatchItemFailures'],
    ScalingConfig: { MaximumConcurrency: { Ref: 'MaximumConcurrency' } },
  })
  expect(template.Parameters.MaximumConcurrency).toMatchObject({ MinValue: 2, MaxValue: 1000 })
})

test('the queue redrives to the DLQ after MaxReceiveCount (default 5), with an alarm on DLQ depth', () => {
  expect(resources.PushQueue.Properties.RedrivePolicy).toEqual({
    deadLetterTargetArn: { 'Fn::GetAtt': ['DeadLetterQueue', 'Arn'] },
    maxReceiveCount: { Ref: 'MaxReceiveCount' },
  })
  expect(template.Parameters.MaxReceiveCount.Default).toBe(5)
  const alarm = resources.DeadLetterAlarm.Properties
  expect(alarm).toMatchObject({ Namespace: 'AWS/SQS', MetricName: 'ApproximateNumberOfMessagesVisible', Threshold: 0 })
  expect(alarm.Dimensions).toEqual([{ Name: 'QueueName', Value: { 'Fn::GetAtt': ['DeadLetterQueue', 'QueueName'] } }])
})

test('the visibility timeout is at least six times the function timeout, for every allowed timeout', () => {
  expect(fn.Timeout).toEqual({ Ref: 'FunctionTimeout' })
  expect(resources.PushQueue.Properties.VisibilityTimeout).toEqual({ 'Fn::FindInMap': ['Timeouts', 'VisibilityFor', { Ref: 'FunctionTimeout' }] })
  const allowed: number[] = template.Parameters.FunctionTimeout.AllowedValues
  expect(allowed).toContain(template.Parameters.FunctionTimeout.Default)
  for (const timeout of allowed) {
    expect(template.Mappings.Timeouts.VisibilityFor[String(timeout)]).toBeGreaterThanOrEqual(6 * timeout)
  }
})

test('secrets reach the function only as Secrets Manager ARNs, read with a policy scoped to them', () => {
  const vars = fn.Environment.Variables
  expect(Object.keys(vars)).not.toContain('DATABASE_URL')
  expect(Object.keys(vars)).not.toContain('PUSHQ_FCM_CREDENTIALS')
  expect(vars.PUSHQ_FCM_CREDENTIALS_SECRET_ARN).toEqual({ Ref: 'FcmCredentialsSecretArn' })
  expect(vars.PUSHQ_DATABASE_URL_SECRET_ARN).toEqual({ Ref: 'DatabaseUrlSecretArn' })
  expect(fn.Policies).toEqual([
    {
      Statement: [
        {
          Effect: 'Allow',
          Action: 'secretsmanager:GetSecretValue',
          Resource: [{ Ref: 'FcmCredentialsSecretArn' }, { Ref: 'DatabaseUrlSecretArn' }],
        },
      ],
    },
  ])
  // Every variable the template sets is one the code reads.
  const sources = ['crates/lambda/src/main.rs', 'crates/delivery/src/config.rs', 'crates/delivery/src/logging.rs'].map((f) => fs.readFileSync(path.join(root, f), 'utf8')).join('\n')
  for (const name of Object.keys(vars)) expect(sources).toContain(`"${name}"`)
})

test('servers get a send-only policy for the queue', () => {
  expect(resources.ProducerPolicy.Properties.PolicyDocument.Statement).toEqual([
    { Effect: 'Allow', Action: 'sqs:SendMessage', Resource: { 'Fn::GetAtt': ['PushQueue', 'Arn'] } },
  ])
})
