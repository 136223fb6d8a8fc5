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

test('the DLQ is never silent: both alarms notify a topic by default, a week before its 14-day retention ends', () => {
  expect(resources.DeadLetterQueue.Properties.MessageRetentionPeriod).toBe(14 * 86400)
  expect(template.Parameters.AlarmTopicArn.Default).toBe('')
  // Without AlarmTopicArn the stack creates a topic, and both alarms notify whichever there is.
  expect(resources.AlarmTopic).toMatchObject({ Type: 'AWS::SNS::Topic', Condition: 'CreateAlarmTopic' })
  const notify = [{ 'Fn::If': ['HasAlarmTopic', { Ref: 'AlarmTopicArn' }, { Ref: 'AlarmTopic' }] }]
  expect(resources.DeadLetterAlarm.Properties.AlarmActions).toEqual(notify)
  const age = resources.DeadLetterAgeAlarm.Properties
  expect(age).toMatchObject({ Namespace: 'AWS/SQS', MetricName: 'ApproximateAgeOfOldestMessage', Threshold: 7 * 86400 })
  expect(age.Dimensions).toEqual(resources.DeadLetterAlarm.Properties.Dimensions)
  expect(age.AlarmActions).toEqual(notify)
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
        // What the recipient rules defer, and an audience push's pages, go back on the function's
        // own queue, or into a schedule of the stack's group sent with the scheduler's role: no
        // listing, no deleting, no other queue.
        { Effect: 'Allow', Action: 'sqs:SendMessage', Resource: { 'Fn::GetAtt': ['PushQueue', 'Arn'] } },
        {
          Effect: 'Allow',
          Action: 'scheduler:CreateSchedule',
          Resource: { 'Fn::Sub': 'arn:${AWS::Partition}:scheduler:${AWS::Region}:${AWS::AccountId}:schedule/${ScheduleGroup}/*' },
        },
        {
          Effect: 'Allow',
          Action: 'iam:PassRole',
          Resource: { 'Fn::GetAtt': ['SchedulerRole', 'Arn'] },
          Condition: { StringEquals: { 'iam:PassedToService': 'scheduler.amazonaws.com' } },
        },
      ],
    },
  ])
  expect(vars.PUSHQ_QUEUE_URL).toEqual({ Ref: 'PushQueue' })
  expect(vars.PUSHQ_SCHEDULER_ROLE_ARN).toEqual({ 'Fn::GetAtt': ['SchedulerRole', 'Arn'] })
  expect(vars.PUSHQ_SCHEDULE_GROUP).toEqual({ Ref: 'ScheduleGroup' })
  // Every variable the template sets is one the code reads.
  const sources = ['crates/lambda/src/main.rs', 'crates/delivery/src/config.rs', 'crates/delivery/src/logging.rs', 'crates/producer/src/config.rs'].map((f) => fs.readFileSync(path.join(root, f), 'utf8')).join('\n')
  for (const name of Object.keys(vars)) expect(sources).toContain(`"${name}"`)
})

test('servers may send to the queue, and schedule and cancel pushes in pushq\'s group only', () => {
  const statements = resources.ProducerPolicy.Properties.PolicyDocument.Statement
  expect(statements[0]).toEqual({ Effect: 'Allow', Action: 'sqs:SendMessage', Resource: { 'Fn::GetAtt': ['PushQueue', 'Arn'] } })
  expect(statements[1].Action).toEqual(['scheduler:CreateSchedule', 'scheduler:DeleteSchedule'])
  expect(JSON.stringify(statements[1].Resource)).toContain('schedule/${ScheduleGroup}/*')
  expect(statements[3]).toMatchObject({ Action: 'iam:PassRole', Resource: { 'Fn::GetAtt': ['SchedulerRole', 'Arn'] } })
  expect(statements.map((s: any) => s.Action).flat()).not.toContain('sqs:ReceiveMessage')
})

test('the scheduler sends scheduled pushes to the queue with a role of its own, and nothing else', () => {
  expect(resources.ScheduleGroup.Type).toBe('AWS::Scheduler::ScheduleGroup')
  const role = resources.SchedulerRole.Properties
  expect(role.AssumeRolePolicyDocument.Statement[0].Principal).toEqual({ Service: 'scheduler.amazonaws.com' })
  expect(role.Policies[0].PolicyDocument.Statement).toEqual([
    { Effect: 'Allow', Action: 'sqs:SendMessage', Resource: { 'Fn::GetAtt': ['PushQueue', 'Arn'] } },
  ])
  expect(Object.keys(template.Outputs)).toEqual(expect.arrayContaining(['ScheduleGroupName', 'SchedulerRoleArn']))
})

test('the optional delivery settings reach the function only when given, and only as values it accepts', () => {
  const vars = fn.Environment.Variables
  expect(vars.PUSHQ_METRICS_NAMESPACE).toEqual({ Ref: 'MetricsNamespace' })
  expect(template.Parameters.MetricsNamespace.Default).toBe('pushq')
  expect(vars.PUSHQ_STALE_DEVICE_DAYS).toEqual({ 'Fn::If': ['HasStaleDeviceDays', { Ref: 'StaleDeviceDays' }, { Ref: 'AWS::NoValue' }] })
  expect(vars.PUSHQ_MAX_PUSH_AGE_SECONDS).toEqual({ 'Fn::If': ['HasMaxPushAge', { Ref: 'MaxPushAgeSeconds' }, { Ref: 'AWS::NoValue' }] })
  expect(template.Conditions.HasStaleDeviceDays).toEqual({ 'Fn::Not': [{ 'Fn::Equals': [{ Ref: 'StaleDeviceDays' }, ''] }] })
  expect(template.Conditions.HasMaxPushAge).toEqual({ 'Fn::Not': [{ 'Fn::Equals': [{ Ref: 'MaxPushAgeSeconds' }, ''] }] })
  // The function wants a whole number >= 1 (crates/delivery/src/config.rs); empty means unset.
  for (const name of ['StaleDeviceDays', 'MaxPushAgeSeconds']) {
    const p = template.Parameters[name]
    expect(p.Default).toBe('')
    const pattern = new RegExp(p.AllowedPattern)
    for (const ok of ['', '1', '30', '270', '86400']) expect(pattern.test(ok)).toBe(true)
    for (const bad of ['0', '-1', '1h', '1.5', ' 30', '030']) expect(pattern.test(bad)).toBe(false)
  }
  // Audience pages: 1 to 5,000 devices (PUSHQ_AUDIENCE_PAGE_SIZE), empty for the default.
  expect(vars.PUSHQ_AUDIENCE_PAGE_SIZE).toEqual({ 'Fn::If': ['HasAudiencePageSize', { Ref: 'AudiencePageSize' }, { Ref: 'AWS::NoValue' }] })
  const pageSize = new RegExp(template.Parameters.AudiencePageSize.AllowedPattern)
  for (const ok of ['', '1', '20', '500', '999', '1000', '4999', '5000']) expect(pageSize.test(ok)).toBe(true)
  for (const bad of ['0', '5001', '9999', '10000', '050', '-1', '1.5']) expect(pageSize.test(bad)).toBe(false)
  // The credentials secret may hold a map of app → key; its description says so.
  expect(template.Parameters.FcmCredentialsSecretArn.Description).toMatch(/app names to service-account keys/)
})

// The dashboard body as CloudFormation renders it (Fn::Sub), with stand-ins for what the stack knows.
function dashboard(): { widgets: { type: string; properties: { metrics?: unknown[][] } }[] } {
  const dash = resources.Dashboard
  expect(dash.Type).toBe('AWS::CloudWatch::Dashboard')
  const body: string = dash.Properties.DashboardBody['Fn::Sub']
  expect(typeof body).toBe('string')
  const known: Record<string, string> = {
    MetricsNamespace: template.Parameters.MetricsNamespace.Default,
    'AWS::Region': 'eu-west-1',
    'DeadLetterQueue.QueueName': 'the-dlq',
  }
  const rendered = body
    .replace(/\$\{(?!!)([^}]*)\}/g, (_, name: string) => {
      expect(Object.keys(known)).toContain(name)
      return known[name]
    })
    .replace(/\$\{!/g, '${')
  return JSON.parse(rendered)
}

interface DashboardMetric {
  namespace: string
  dimensions: string[]
  name: string
  service?: string
  stat: string
}

function dashboardMetrics(): DashboardMetric[] {
  const found: DashboardMetric[] = []
  for (const widget of dashboard().widgets) {
    for (const entry of widget.properties.metrics ?? []) {
      const first = entry[0] as string | { expression?: string }
      if (typeof first === 'object') {
        const expression = first.expression ?? ''
        const search = expression.match(/^SEARCH\('\{([^}]*)\}\s*([^']*)',\s*'([^']+)',\s*(\d+)\)$/)
        expect(search).not.toBeNull()
        const [namespace, ...dimensions] = search![1].split(',').map((s) => s.trim().replace(/^"(.*)"$/, '$1'))
        const name = search![2].match(/MetricName="([^"]+)"/)
        expect(name).not.toBeNull()
        found.push({ namespace, dimensions: dimensions.sort(), name: name![1], service: search![2].match(/Service="([^"]+)"/)?.[1], stat: search![3] })
      } else {
        const [namespace, name, ...rest] = entry as (string | object)[]
        const pairs = rest.filter((x): x is string => typeof x === 'string')
        const dimensions = pairs.filter((_, i) => i % 2 === 0).sort()
        const options = rest.find((x) => typeof x === 'object') as { stat?: string } | undefined
        found.push({ namespace: namespace as string, dimensions, name: name as string, stat: options?.stat ?? 'Maximum' })
      }
    }
  }
  return found
}

// Whether each of these is a metric the function emits, with these dimensions, is checked against
// the code that emits it by crates/lambda/tests/dashboard.rs (it runs emf_lines); the Lambda's
// `Service` is checked on the real binary's output by crates/lambda/tests/runtime_api.rs.
test('the dashboard graphs pushq\'s metrics per app (dimensions App and Service), latency as p50 and p99', () => {
  const ours = dashboardMetrics().filter((m) => m.namespace === template.Parameters.MetricsNamespace.Default)
  expect(ours.map((m) => m.name).sort()).toEqual(
    ['EnqueueToSendLatency', 'EnqueueToSendLatency', 'Expired', 'Failed', 'HandedBack', 'InvalidTokens', 'Sent', 'StaleDevices', 'Throttled'].sort(),
  )
  for (const m of ours) {
    expect(m.dimensions).toEqual(['App', 'Service'])
    expect(m.service).toBe('pushq-lambda')
  }
  expect(ours.filter((m) => m.name === 'EnqueueToSendLatency').map((m) => m.stat).sort()).toEqual(['p50', 'p99'])
  for (const m of ours.filter((m) => m.name !== 'EnqueueToSendLatency')) expect(m.stat).toBe('Sum')
})

test('the dashboard shows the DLQ depth and reads the namespace the function writes', () => {
  const sqs = dashboardMetrics().filter((m) => m.namespace === 'AWS/SQS')
  expect(sqs).toEqual([{ namespace: 'AWS/SQS', dimensions: ['QueueName'], name: 'ApproximateNumberOfMessagesVisible', stat: 'Maximum' }])
  const body: string = resources.Dashboard.Properties.DashboardBody['Fn::Sub']
  expect(body).toContain('"${DeadLetterQueue.QueueName}"')
  // The SEARCH schemas name the namespace through the same parameter as PUSHQ_METRICS_NAMESPACE.
  const schemas = [...body.matchAll(/SEARCH\('\{([^,]*),/g)].map((m) => m[1])
  expect(schemas.length).toBeGreaterThan(0)
  for (const s of schemas) expect(s).toBe('\\"${MetricsNamespace}\\"')
  expect(fn.Environment.Variables.PUSHQ_METRICS_NAMESPACE).toEqual({ Ref: 'MetricsNamespace' })
})
