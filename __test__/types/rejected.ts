// Pushes TypeScript must refuse before they run: each line below `@ts-expect-error` is otherwise a
// valid call, so `npx tsc --noEmit -p .` fails ("Unused '@ts-expect-error' directive") the day the
// types let one of them through. Never run; accepted.ts holds what must compile.
import { PushClient, enqueuePush } from 'pushq'
import type { Push, PushBase } from 'pushq'

declare const client: PushClient

// No target.
// @ts-expect-error a push needs a target
void enqueuePush({ notification: { title: 'hi' } })
// @ts-expect-error a push needs a target
void client.enqueuePush({})
// @ts-expect-error a push needs a target
void client.enqueuePushes([{ token: 'device-1' }, { notification: { title: 'hi' } }])
const base: PushBase = { notification: { title: 'hi' } }
// @ts-expect-error common fields alone are no push
void client.enqueuePush(base)

// Two targets.
// @ts-expect-error one target only
void enqueuePush({ token: 'a', userId: 'u' })
// @ts-expect-error one target only
void client.enqueuePush({ topic: 'news', condition: "'news' in topics" })
// @ts-expect-error one target only
void client.enqueuePush({ token: 'a', tokens: ['b'] })
// @ts-expect-error one target only
void client.enqueuePush({ userId: 'u', userIds: ['v'] })
// @ts-expect-error one target only
const twoTargets: Push = { tokens: ['a'], topic: 'news' }
void twoTargets
// Not only in object literals: a value with two targets is refused wherever it was built.
const built = { token: 'a', userId: 'u', notification: { title: 'hi' } }
// @ts-expect-error one target only
void client.enqueuePush(built)
// @ts-expect-error one target only
void client.enqueuePush({ ...base, token: 'a', topic: 'news' })

// @ts-expect-error one target only
void client.enqueuePush({ audience: { all: true }, userId: 'u' })
// @ts-expect-error an audience is all or a segment, not both
void client.enqueuePush({ audience: { all: true, segment: 'gym_42' } })
// @ts-expect-error all is true, never false
void client.enqueuePush({ audience: { all: false } })

// A target of the wrong type.
// @ts-expect-error userIds is a list
void client.enqueuePush({ userIds: 'u' })
// @ts-expect-error token is one string
void client.enqueuePush({ token: ['a'] })

// Data values are strings.
// @ts-expect-error data values are strings
void enqueuePush({ token: 'a', data: { score: 1 } })
// @ts-expect-error android.data values are strings
void client.enqueuePush({ token: 'a', android: { data: { score: 1 } } })

// Unknown top-level fields (pushq rejects them at run time with PUSHQ_INVALID_PUSH).
// @ts-expect-error priority belongs in android or apns
void enqueuePush({ token: 'a', priority: 'high' })
// @ts-expect-error no such field
void client.enqueuePush({ userId: 'u', dryRun: true })

// Options of the wrong type.
// @ts-expect-error delaySeconds is a number
void enqueuePush({ token: 'a', delaySeconds: '10' })
// @ts-expect-error android.priority is 'high' or 'normal'
void client.enqueuePush({ token: 'a', android: { priority: 'urgent' } })

// firebase-admin's types where pushq has them.
// @ts-expect-error webpush.notification.dir is 'auto', 'ltr' or 'rtl'
void client.enqueuePush({ token: 'a', webpush: { notification: { dir: 'up' } } })
// @ts-expect-error a web notification action needs a title
void client.enqueuePush({ token: 'a', webpush: { notification: { actions: [{ action: 'book' }] } } })
// @ts-expect-error dryRun is a boolean
void enqueuePush({ token: 'a' }, 'yes')

// A caught error is not a PushqError until narrowed.
async function unnarrowed() {
  try {
    await client.flush()
  } catch (e) {
    // @ts-expect-error e is unknown until isPushqError(e)
    return e.code
  }
}
void unnarrowed
