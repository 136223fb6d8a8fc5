// The database DeviceRegistry and DeliveryLog open: their options are checked, a URL that is no
// database URL is named by the option or variable it came from, the schema is created only when
// asked (`migrate: true` or `pushq migrate`), a schema older than this pushq needs is named, an
// unreachable server fails within seconds without its password in the message, and a failed first
// connection is not kept. (Local mode's own database errors: local.spec.ts.)
import { DeviceRegistry, DeliveryLog, isPushqError } from '..'
import { freshDatabase, PUSHQ_BIN, runScript, tempDir } from './support/pushq-bin'
import { execFileSync } from 'child_process'
import * as fs from 'fs'
import * as path from 'path'

describe('options and URLs', () => {
  test('an unknown option is PUSHQ_CONFIG naming it, not a silent default database', () => {
    for (const make of [(o: any) => new DeviceRegistry(o), (o: any) => new DeliveryLog(o)]) {
      let err: unknown
      try {
        make({ databseUrl: 'sqlite://elsewhere.db' })
      } catch (e) {
        err = e
      }
      expect(err).toMatchObject({ code: 'PUSHQ_CONFIG', message: expect.stringContaining('options.databseUrl: unknown option') })
    }
  })

  test('errors name the option or variable the database came from', async () => {
    await expect(new DeviceRegistry({ databaseUrl: 'redis://127.0.0.1' }).devices('u1')).rejects.toMatchObject({
      code: 'PUSHQ_DATABASE',
      message: expect.stringMatching(/^options\.databaseUrl: /),
    })
    // From the environment (jest's process.env is a copy: the variable is set for a script).
    const { stdout } = await runScript(
      `const { DeliveryLog } = require('pushq')
new DeliveryLog().forPush('x').catch((e) => console.log(JSON.stringify({ code: e.code, message: e.message })))`,
      { DATABASE_URL: 'redis://127.0.0.1' },
    )
    expect(JSON.parse(stdout)).toMatchObject({ code: 'PUSHQ_DATABASE', message: expect.stringMatching(/^DATABASE_URL: /) })
  })

  test('an unreachable PostgreSQL fails within seconds, naming host and port but not the password', async () => {
    const registry = new DeviceRegistry({ databaseUrl: 'postgres://pushq:s3cret-pw@127.0.0.1:1/test' })
    const err = await registry.devices('u1').then(() => null, (e: unknown) => e)
    expect(err).toMatchObject({ code: 'PUSHQ_DATABASE', message: expect.stringContaining('PostgreSQL at 127.0.0.1:1 could not be reached within 5 s') })
    expect((err as Error).message).not.toContain('s3cret-pw')
  }, 15_000)

  test("a database error carries the database's own error as cause, without the password", async () => {
    const registry = new DeviceRegistry({ databaseUrl: 'postgres://pushq:s3cret-pw@127.0.0.1:1/test' })
    const err = await registry.devices('u1').then(() => null, (e: unknown) => e)
    if (!isPushqError(err) || !err.cause) throw new Error(`expected a PushqError with a cause, got ${String(err)}`)
    expect(err.cause.message).toContain('PostgreSQL at 127.0.0.1:1 could not be reached within 5 s')
    expect(err.cause.message).not.toContain('s3cret-pw')
  }, 15_000)
})

describe('the schema and the connection', () => {
  function tables(file: string): string[] {
    const out = execFileSync('python3', ['-c', `import sqlite3,sys; print("\\n".join(r[0] for r in sqlite3.connect(sys.argv[1]).execute("select name from sqlite_master where type='table' order by name")))`, file])
    return out.toString().trim().split('\n').filter(Boolean)
  }

  test('never run DDL unless asked: a database without the schema is PUSHQ_DATABASE saying to run pushq migrate', async () => {
    const file = path.join(tempDir(), 'fresh.db')
    const databaseUrl = `sqlite://${file}`
    const registry = new DeviceRegistry({ databaseUrl })
    await expect(registry.register({ userId: 'u1', token: 't1', platform: 'ios' })).rejects.toMatchObject({
      code: 'PUSHQ_DATABASE',
      message: expect.stringContaining('pushq migrate'),
    })
    await expect(new DeliveryLog({ databaseUrl }).forPush('p')).rejects.toMatchObject({ code: 'PUSHQ_DATABASE' })
    expect(tables(file)).toEqual([])
    // Asked to, it applies the schema.
    await new DeviceRegistry({ databaseUrl, migrate: true }).register({ userId: 'u1', token: 't1', platform: 'ios' })
    expect(tables(file)).toEqual(expect.arrayContaining(['pushq_deliveries', 'pushq_devices', 'pushq_rejected']))
    expect(await registry.devices('u1')).toEqual([{ app: 'default', userId: 'u1', token: 't1', kind: 'token', platform: 'ios', live: true, lastSeenAt: expect.any(String) }])
  })

  test('a schema older than this pushq needs is named, with what to do', async () => {
    const databaseUrl = freshDatabase('sqlite')
    execFileSync(PUSHQ_BIN, ['migrate'], { env: { ...process.env, DATABASE_URL: databaseUrl } })
    // As if the database had been migrated by an older pushq, which had none of today's migrations.
    const file = databaseUrl.replace('sqlite://', '')
    execFileSync('python3', ['-c', 'import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute("delete from _sqlx_migrations"); c.commit()', file])
    await expect(new DeviceRegistry({ databaseUrl }).devices('u1')).rejects.toMatchObject({
      code: 'PUSHQ_DATABASE',
      message: expect.stringMatching(/older than this pushq needs.*pushq migrate/),
    })
  })

  test('a failed first connection is not kept: the next call connects', async () => {
    const dir = path.join(tempDir(), 'not-yet')
    const databaseUrl = `sqlite://${path.join(dir, 'devices.db')}`
    const registry = new DeviceRegistry({ databaseUrl, migrate: true })
    // The directory does not exist yet: SQLite cannot create the file.
    await expect(registry.devices('u1')).rejects.toMatchObject({ code: 'PUSHQ_DATABASE' })
    fs.mkdirSync(dir)
    await registry.register({ userId: 'u1', token: 't1', platform: 'ios' })
    expect(await registry.devices('u1')).toEqual([{ app: 'default', userId: 'u1', token: 't1', kind: 'token', platform: 'ios', live: true, lastSeenAt: expect.any(String) }])
  })
})
