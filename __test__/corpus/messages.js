// The validation corpus: pushes firebase-admin accepts and rejects, across every part of its
// `Message` and pushq's own fields. `field` (invalid cases only) is the field pushq must name.
// Verdicts and FCM bodies are not written here: oracle.js asks firebase-admin for them.
// `fcm` cases are pushes firebase-admin accepts and FCM refuses (an unknown field at any depth,
// an enum value, a reserved data key, a link that is not HTTPS): pushq refuses them too, and the
// emulator answers them as FCM does (docs/validation.md lists the rules and their sources).
'use strict'

const TOKEN = 'fcm-token-' + 'a1B2c3D4e5'.repeat(14)
// A Firebase installation ID: 22 characters of URL-safe base64.
const FID = 'cX1dQ7Fk2a0b9Zp-Wq_3rT'
const IMG = 'https://cdn.example.com/img/class-42.png'

const ok = (name, push) => ({ name, push })
const bad = (name, field, push) => ({ name, field, push })
const fcm = (name, field, push) => ({ name, field, push, fcmRefuses: true })

module.exports = [
  // --- targets
  ok('token-notification', { token: TOKEN, notification: { title: 'Spin 45', body: 'Starts in 15 minutes' } }),
  ok('topic-plain', { topic: 'gym-berlin', notification: { title: 'Closed on Sunday' } }),
  ok('topic-prefixed', { topic: '/topics/gym-berlin', data: { kind: 'closure' } }),
  ok('topic-all-legal-chars', { topic: 'a-b_c.d~e%20', data: { x: '1' } }),
  ok('condition', { condition: "'sports' in topics && ('news' in topics || 'gym' in topics)", notification: { title: 'x' } }),
  ok('token-only', { token: TOKEN }),
  bad('topic-malformed', 'topic', { topic: 'gym berlin!', notification: { title: 'x' } }),
  bad('topic-only-prefix', 'topic', { topic: '/topics/' }),
  bad('no-target', 'target', { notification: { title: 'x' } }),
  bad('two-targets', 'target', { token: TOKEN, topic: 'news' }),
  bad('empty-token', 'token', { token: '' }),
  bad('not-an-object', 'push', 'just a string'),
  bad('null-push', 'push', null),

  // --- FIDs (firebase-admin 14's FidMessage / FidMulticastMessage)
  ok('fid-only', { fid: FID }),
  ok('fid-notification', { fid: FID, notification: { title: 'Spin 45', body: 'Starts in 15 minutes', imageUrl: IMG } }),
  ok('fid-data', { fid: FID, data: { classId: '981' } }),
  ok('fid-android', { fid: FID, android: { priority: 'high', ttl: 60000, collapseKey: 'class-42', notification: { color: '#FF8800', channelId: 'reminders' } } }),
  ok('fid-apns', { fid: FID, apns: { headers: { 'apns-priority': '10' }, payload: { aps: { alert: { title: 't', locKey: 'LK', locArgs: ['a'] }, contentAvailable: true } } } }),
  ok('fid-webpush-fcm-options', { fid: FID, webpush: { headers: { TTL: '60' } }, fcmOptions: { analyticsLabel: 'fid' } }),
  ok('fids', { fids: [FID, FID.replace('c', 'd')], notification: { title: 'Hi' }, data: { a: 'b' } }),
  ok('fids-android-apns', { fids: [FID], android: { ttl: 1500.5 }, apns: { payload: { aps: { badge: 2 } } }, category: 'promo' }),
  bad('empty-fid', 'fid', { fid: '' }),
  bad('fid-number', 'fid', { fid: 42 }),
  bad('fid-and-token', 'target', { fid: FID, token: TOKEN }),
  bad('fid-and-topic', 'target', { fid: FID, topic: 'news' }),
  bad('fid-with-bad-android', 'android.ttl', { fid: FID, android: { ttl: -1 } }),
  bad('fid-with-bad-data', 'data.n', { fid: FID, data: { n: 1 } }),
  bad('fids-empty', 'fids', { fids: [] }),
  bad('fids-empty-entry', 'fids[1]', { fids: [FID, ''] }),
  bad('fids-string', 'fids', { fids: FID }),
  bad('fids-and-tokens', 'target', { fids: [FID], tokens: [TOKEN] }),
  bad('fids-and-user-id', 'target', { fids: [FID], userId: 'u1' }),

  // --- data
  ok('data-strings', { token: TOKEN, data: { classId: '981', studio: 'Berlin Mitte', empty: '' } }),
  bad('data-number', 'data.score', { token: TOKEN, data: { score: 42 } }),
  bad('data-not-object', 'data', { token: TOKEN, data: 'score=42' }),
  bad('data-array', 'data', { token: TOKEN, data: ['a'] }),
  bad('data-null', 'data', { token: TOKEN, data: null }),
  // firebase-admin 14's deepCopy drops __proto__/constructor/prototype keys before validating,
  // except in an object with its own `constructor` key (to it a class instance, copied whole).
  ok('data-prototype-key', { token: TOKEN, data: { prototype: 5, a: 'b' } }),
  ok('data-constructor-key', { token: TOKEN, data: { constructor: 'x', prototype: 'y' } }),
  ok('apns-payload-prototype-keys', { token: TOKEN, apns: { payload: { aps: {}, ['__proto__']: { x: 1 }, n: { prototype: [1, { prototype: 2, k: 3 }] } } } }),

  // --- notification
  ok('notification-image', { token: TOKEN, notification: { title: 't', body: 'b', imageUrl: IMG } }),
  ok('notification-image-ipv6', { token: TOKEN, notification: { imageUrl: 'http://[::1]/a.png' } }),
  ok('notification-image-query', { token: TOKEN, notification: { imageUrl: 'https://cdn.example.com/a.png?v=3&w=200' } }),
  bad('notification-image-ftp', 'notification.imageUrl', { token: TOKEN, notification: { imageUrl: 'ftp://cdn.example.com/a.png' } }),
  bad('notification-image-space', 'notification.imageUrl', { token: TOKEN, notification: { imageUrl: 'https://cdn.example.com/a b.png' } }),
  bad('notification-image-and-image', 'notification.imageUrl', { token: TOKEN, notification: { imageUrl: IMG, image: IMG } }),
  bad('notification-not-object', 'notification', { token: TOKEN, notification: 'hello' }),

  // --- android
  ok('android-full', {
    token: TOKEN,
    android: {
      collapseKey: 'class-42', priority: 'high', ttl: 3600000, restrictedPackageName: 'com.example.gym',
      directBootOk: true, bandwidthConstrainedOk: false, restrictedSatelliteOk: true,
      data: { a: 'b' }, fcmOptions: { analyticsLabel: 'reminder' },
    },
  }),
  ok('android-ttl-zero', { token: TOKEN, android: { ttl: 0 } }),
  ok('android-ttl-fraction', { token: TOKEN, android: { ttl: 1500.5 } }),
  ok('android-ttl-ms', { token: TOKEN, android: { ttl: 1 } }),
  bad('android-ttl-negative', 'android.ttl', { token: TOKEN, android: { ttl: -1 } }),
  bad('android-ttl-string', 'android.ttl', { token: TOKEN, android: { ttl: '3600' } }),
  bad('android-data-number', 'android.data.n', { token: TOKEN, android: { data: { n: 1 } } }),
  bad('android-fcm-label-number', 'android.fcmOptions.analyticsLabel', { token: TOKEN, android: { fcmOptions: { analyticsLabel: 7 } } }),
  bad('android-not-object', 'android', { token: TOKEN, android: true }),
  ok('android-notification-full', {
    token: TOKEN,
    android: {
      notification: {
        title: 't', body: 'b', icon: 'ic_gym', color: '#FF8800', sound: 'bell', tag: 'class', clickAction: 'OPEN_CLASS',
        bodyLocKey: 'body_key', bodyLocArgs: ['Spin'], titleLocKey: 'title_key', titleLocArgs: ['Alex'],
        channelId: 'reminders', imageUrl: IMG, ticker: 'Class soon', sticky: false, localOnly: true,
        priority: 'high', vibrateTimingsMillis: [100, 250.5, 1000], defaultVibrateTimings: false, defaultSound: true,
        defaultLightSettings: false, visibility: 'private', notificationCount: 3, proxy: 'allow',
      },
    },
  }),
  ok('android-notification-event-time', { token: TOKEN, android: { notification: { eventTimestamp: new Date('2026-11-24T10:15:30.123Z') } } }),
  ok('android-notification-priority-min', { token: TOKEN, android: { notification: { priority: 'min', visibility: 'secret', proxy: 'if_priority_lowered' } } }),
  ok('android-light-settings-rgb', { token: TOKEN, android: { notification: { lightSettings: { color: '#336699', lightOnDurationMillis: 200, lightOffDurationMillis: 1500.25 } } } }),
  ok('android-light-settings-rgba', { token: TOKEN, android: { notification: { lightSettings: { color: '#33669980', lightOnDurationMillis: 0, lightOffDurationMillis: 100 } } } }),
  bad('android-color-short', 'android.notification.color', { token: TOKEN, android: { notification: { color: '#F80' } } }),
  bad('android-body-loc-args-no-key', 'android.notification.bodyLocKey', { token: TOKEN, android: { notification: { bodyLocArgs: ['x'] } } }),
  bad('android-title-loc-args-no-key', 'android.notification.titleLocKey', { token: TOKEN, android: { notification: { titleLocArgs: ['x'] } } }),
  bad('android-image-bad', 'android.notification.imageUrl', { token: TOKEN, android: { notification: { imageUrl: 'not-a-url' } } }),
  bad('android-event-time-number', 'android.notification.eventTimestamp', { token: TOKEN, android: { notification: { eventTimestamp: 1732442400000 } } }),
  bad('android-vibrate-empty', 'android.notification.vibrateTimingsMillis', { token: TOKEN, android: { notification: { vibrateTimingsMillis: [] } } }),
  bad('android-vibrate-negative', 'android.notification.vibrateTimingsMillis[1]', { token: TOKEN, android: { notification: { vibrateTimingsMillis: [100, -5] } } }),
  bad('android-priority-number', 'android.notification.priority', { token: TOKEN, android: { notification: { priority: 2 } } }),
  bad('android-light-color-bad', 'android.notification.lightSettings.color', { token: TOKEN, android: { notification: { lightSettings: { color: 'blue', lightOnDurationMillis: 1, lightOffDurationMillis: 1 } } } }),
  bad('android-light-on-missing', 'android.notification.lightSettings.lightOnDurationMillis', { token: TOKEN, android: { notification: { lightSettings: { color: '#336699', lightOffDurationMillis: 1 } } } }),
  bad('android-light-off-negative', 'android.notification.lightSettings.lightOffDurationMillis', { token: TOKEN, android: { notification: { lightSettings: { color: '#336699', lightOnDurationMillis: 1, lightOffDurationMillis: -1 } } } }),
  bad('android-notification-null', 'android.notification', { token: TOKEN, android: { notification: null } }),

  // --- apns
  ok('apns-alert-string', { token: TOKEN, apns: { headers: { 'apns-priority': '10' }, payload: { aps: { alert: 'Class soon', badge: 3, sound: 'bell.caf' } } } }),
  ok('apns-alert-object', {
    token: TOKEN,
    apns: {
      payload: {
        aps: {
          alert: {
            title: 't', subtitle: 's', body: 'b', locKey: 'LK', locArgs: ['a'], titleLocKey: 'TLK', titleLocArgs: ['b'],
            subtitleLocKey: 'SLK', subtitleLocArgs: ['c'], actionLocKey: 'ALK', launchImage: 'launch.png',
          },
          threadId: 'class-42', category: 'REMINDER',
        },
      },
    },
  }),
  ok('apns-critical-sound', { token: TOKEN, apns: { payload: { aps: { sound: { critical: true, name: 'alarm.caf', volume: 0.7 } } } } }),
  ok('apns-sound-not-critical', { token: TOKEN, apns: { payload: { aps: { sound: { critical: false, name: 'a.caf' } } } } }),
  ok('apns-content-available', { token: TOKEN, apns: { payload: { aps: { contentAvailable: true, mutableContent: true } } } }),
  ok('apns-content-available-false', { token: TOKEN, apns: { payload: { aps: { contentAvailable: false } } } }),
  ok('apns-custom-payload', { token: TOKEN, apns: { payload: { aps: { alert: 'x' }, classId: 42, nested: { a: [1, 2] } } } }),
  ok('apns-fcm-options', { token: TOKEN, apns: { fcmOptions: { imageUrl: IMG, analyticsLabel: 'ios' } } }),
  ok('apns-live-activity', { token: TOKEN, apns: { liveActivityToken: 'live-activity-token-1', payload: { aps: {} } } }),
  bad('apns-headers-number', 'apns.headers.apns-priority', { token: TOKEN, apns: { headers: { 'apns-priority': 10 } } }),
  bad('apns-live-activity-empty', 'apns.liveActivityToken', { token: TOKEN, apns: { liveActivityToken: '' } }),
  bad('apns-live-activity-number', 'apns.liveActivityToken', { token: TOKEN, apns: { liveActivityToken: 5 } }),
  bad('apns-payload-string', 'apns.payload', { token: TOKEN, apns: { payload: 'x' } }),
  bad('apns-aps-null', 'apns.payload.aps', { token: TOKEN, apns: { payload: { aps: null } } }),
  bad('apns-alert-number', 'apns.payload.aps.alert', { token: TOKEN, apns: { payload: { aps: { alert: 5 } } } }),
  bad('apns-loc-args-no-key', 'apns.payload.aps.alert.locKey', { token: TOKEN, apns: { payload: { aps: { alert: { locArgs: ['a'] } } } } }),
  bad('apns-subtitle-loc-args-no-key', 'apns.payload.aps.alert.subtitleLocKey', { token: TOKEN, apns: { payload: { aps: { alert: { subtitleLocArgs: ['a'] } } } } }),
  bad('apns-volume-too-loud', 'apns.payload.aps.sound.volume', { token: TOKEN, apns: { payload: { aps: { sound: { name: 'a.caf', volume: 1.5 } } } } }),
  bad('apns-sound-no-name', 'apns.payload.aps.sound.name', { token: TOKEN, apns: { payload: { aps: { sound: { critical: true } } } } }),
  bad('apns-sound-empty', 'apns.payload.aps.sound', { token: TOKEN, apns: { payload: { aps: { sound: '' } } } }),
  bad('apns-thread-id-twice', 'apns.payload.aps.threadId', { token: TOKEN, apns: { payload: { aps: { threadId: 'a', 'thread-id': 'b' } } } }),
  bad('apns-fcm-image-bad', 'apns.fcmOptions.imageUrl', { token: TOKEN, apns: { fcmOptions: { imageUrl: 'javascript:alert(1)' } } }),

  // --- webpush and fcmOptions
  ok('webpush-full', {
    token: TOKEN,
    webpush: {
      headers: { TTL: '60', Urgency: 'high' }, data: { a: 'b' },
      notification: { title: 't', body: 'b', icon: 'https://example.com/i.png', requireInteraction: true, actions: [{ action: 'open', title: 'Open' }] },
      fcmOptions: { link: 'https://example.com/classes/42' },
    },
  }),
  bad('webpush-header-number', 'webpush.headers.TTL', { token: TOKEN, webpush: { headers: { TTL: 60 } } }),
  bad('webpush-data-bool', 'webpush.data.a', { token: TOKEN, webpush: { data: { a: true } } }),
  ok('fcm-options', { token: TOKEN, fcmOptions: { analyticsLabel: 'campaign-nov' } }),
  // firebase-admin 14's sendEachForMulticast copies the whole message, FCM's own spelling too.
  ok('tokens-fcm-options-snake', { tokens: [TOKEN], fcm_options: { analytics_label: 'snake' } }),
  bad('fcm-options-label-number', 'fcmOptions.analyticsLabel', { token: TOKEN, fcmOptions: { analyticsLabel: 1 } }),

  // --- pushq's own fields
  ok('user-id', { userId: 'user-42', notification: { title: 'Hi' }, android: { ttl: 60000 }, apns: { payload: { aps: { badge: 1 } } } }),
  ok('user-ids', { userIds: ['user-1', 'user-2', 'user-3'], notification: { title: 'Hi' }, category: 'promo' }),
  ok('tokens', { tokens: [TOKEN, TOKEN + 'x'], data: { a: 'b' }, webpush: { headers: { TTL: '5' } } }),
  ok('idempotency-delay-category', { userId: 'u9', idempotencyKey: 'reminder:981:u9', delaySeconds: 900, category: 'class-reminder', notification: { title: 'x' } }),
  ok('delay-zero', { token: TOKEN, delaySeconds: 0 }),
  bad('delay-too-long', 'delaySeconds', { token: TOKEN, delaySeconds: 901 }),
  bad('delay-negative', 'delaySeconds', { token: TOKEN, delaySeconds: -1 }),
  bad('delay-fraction', 'delaySeconds', { token: TOKEN, delaySeconds: 1.5 }),
  bad('delay-string', 'delaySeconds', { token: TOKEN, delaySeconds: '5' }),
  bad('idempotency-empty', 'idempotencyKey', { token: TOKEN, idempotencyKey: '' }),
  bad('idempotency-number', 'idempotencyKey', { token: TOKEN, idempotencyKey: 42 }),
  bad('idempotency-too-long', 'idempotencyKey', { token: TOKEN, idempotencyKey: 'k'.repeat(129) }),
  bad('idempotency-space', 'idempotencyKey', { token: TOKEN, idempotencyKey: 'a key' }),
  bad('idempotency-non-ascii', 'idempotencyKey', { token: TOKEN, idempotencyKey: 'schlüssel' }),
  bad('category-empty', 'category', { token: TOKEN, category: '' }),
  bad('category-number', 'category', { token: TOKEN, category: 42 }),
  bad('category-too-long', 'category', { token: TOKEN, category: 'c'.repeat(101) }),
  bad('user-id-empty', 'userId', { userId: '' }),
  bad('user-id-number', 'userId', { userId: 42 }),
  bad('user-id-too-long', 'userId', { userId: 'u'.repeat(256) }),
  bad('user-ids-empty', 'userIds', { userIds: [] }),
  bad('user-ids-empty-entry', 'userIds[0]', { userIds: [''] }),
  bad('user-ids-string', 'userIds', { userIds: 'u1' }),
  bad('tokens-empty', 'tokens', { tokens: [] }),
  bad('tokens-empty-entry', 'tokens[1]', { tokens: ['a', ''] }),
  bad('user-id-and-token', 'target', { userId: 'u1', token: TOKEN }),
  bad('user-id-with-bad-android', 'android.ttl', { userId: 'u1', android: { ttl: -3 } }),
  // Valid pushes name the default app only: the delivery engine runs this corpus with one key.
  ok('app', { token: TOKEN, app: 'default', notification: { title: 'x' } }),
  ok('app-fids', { fids: [FID], app: 'default' }),
  bad('app-empty', 'app', { token: TOKEN, app: '' }),
  bad('app-space', 'app', { token: TOKEN, app: 'my app' }),
  bad('app-slash', 'app', { token: TOKEN, app: 'a/b' }),
  bad('app-too-long', 'app', { token: TOKEN, app: 'a'.repeat(65) }),
  bad('app-number', 'app', { token: TOKEN, app: 7 }),
  // Far ahead: the producer refuses a push whose time has passed, and the engine would not send it.
  ok('expires-at-date', { token: TOKEN, expiresAt: new Date('2099-11-26T22:00:00.000Z') }),
  ok('expires-at-offset', { fids: [FID], expiresAt: '2099-11-26T23:00:00+01:00', notification: { title: 'x' } }),
  ok('expires-at-fid', { fid: FID, expiresAt: '2099-01-01T00:00:00Z', data: { a: 'b' } }),
  bad('expires-at-words', 'expiresAt', { token: TOKEN, expiresAt: 'tomorrow' }),
  bad('expires-at-number', 'expiresAt', { token: TOKEN, expiresAt: 1795730400000 }),
  bad('expires-at-no-zone', 'expiresAt', { token: TOKEN, expiresAt: '2026-11-26T22:00:00' }),
  bad('expires-at-date-only', 'expiresAt', { token: TOKEN, expiresAt: '2026-11-26' }),
  bad('send-at-words', 'sendAt', { token: TOKEN, sendAt: 'next tuesday' }),
  bad('send-at-number', 'sendAt', { userId: 'u1', sendAt: 1795730400000 }),
  bad('send-at-no-zone', 'sendAt', { token: TOKEN, sendAt: '2027-01-05T07:00:00' }),
  bad('send-at-with-delay', 'sendAt', { token: TOKEN, sendAt: '2027-01-05T07:00:00Z', delaySeconds: 5 }),
  // --- the push id a caller chooses (to enqueue again after an unknown outcome)
  ok('push-id-v7', { token: TOKEN, id: '0192f5c4-7b1e-7c3a-9d2e-3f4a5b6c7d8e', notification: { title: 'x' } }),
  ok('push-id-v4-users', { userIds: ['u1', 'u2'], id: 'f47ac10b-58cc-4372-a567-0e02b2c3d479' }),
  bad('push-id-not-uuid', 'id', { token: TOKEN, id: 'order-42' }),
  bad('push-id-unhyphenated', 'id', { token: TOKEN, id: '0192f5c47b1e7c3a9d2e3f4a5b6c7d8e' }),
  bad('push-id-number', 'id', { token: TOKEN, id: 42 }),
  // --- beyond firebase-admin: what FCM itself refuses (firebase-admin sends these, FCM answers 400)
  fcm('fcm-unknown-notification-field', 'notification.titel', { token: TOKEN, notification: { titel: 'Spin 45' } }),
  fcm('fcm-unknown-android-notification-field', 'android.notification.chanelId', { token: TOKEN, android: { notification: { chanelId: 'classes' } } }),
  fcm('fcm-unknown-android-field', 'android.ttlSeconds', { token: TOKEN, android: { ttlSeconds: 60 } }),
  fcm('fcm-unknown-light-settings-field', 'android.notification.lightSettings.colour', {
    token: TOKEN,
    android: { notification: { lightSettings: { color: '#ff0000', colour: '#00ff00', lightOnDurationMillis: 100, lightOffDurationMillis: 100 } } },
  }),
  fcm('fcm-unknown-webpush-fcm-options-field', 'webpush.fcmOptions.url', { token: TOKEN, webpush: { fcmOptions: { url: 'https://example.com' } } }),
  fcm('fcm-unknown-apns-field', 'apns.header', { token: TOKEN, apns: { header: { 'apns-priority': '5' } } }),
  fcm('fcm-unknown-fcm-options-field', 'fcmOptions.label', { topic: 'news', fcmOptions: { label: 'x' } }),
  fcm('fcm-android-priority-urgent', 'android.priority', { token: TOKEN, android: { priority: 'urgent' } }),
  fcm('fcm-notification-priority-urgent', 'android.notification.priority', { token: TOKEN, android: { notification: { priority: 'urgent' } } }),
  fcm('fcm-visibility-hidden', 'android.notification.visibility', { token: TOKEN, android: { notification: { visibility: 'hidden' } } }),
  fcm('fcm-proxy-maybe', 'android.notification.proxy', { token: TOKEN, android: { notification: { proxy: 'maybe' } } }),
  fcm('fcm-data-from', 'data.from', { token: TOKEN, data: { from: 'gym' } }),
  fcm('fcm-data-google-prefix', 'data.google.x', { token: TOKEN, data: { 'google.x': '1' } }),
  fcm('fcm-data-gcm-notification-prefix', 'data.gcm.notification.title', { topic: 'news', data: { 'gcm.notification.title': 'x' } }),
  fcm('fcm-data-message-type', 'data.message_type', { token: TOKEN, data: { message_type: 'x' } }),
  fcm('fcm-android-data-from', 'android.data.from', { token: TOKEN, android: { data: { from: 'gym' } } }),
  fcm('fcm-webpush-data-google', 'webpush.data.google.c.a', { token: TOKEN, webpush: { data: { 'google.c.a': '1' } } }),
  fcm('fcm-webpush-link-http', 'webpush.fcmOptions.link', { token: TOKEN, webpush: { fcmOptions: { link: 'http://example.com/class/42' } } }),
  fcm('fcm-webpush-link-relative', 'webpush.fcmOptions.link', { token: TOKEN, webpush: { fcmOptions: { link: '/class/42' } } }),
  // What FCM takes though it looks unusual: its own enum spelling, free-form web and APNs objects.
  ok('fcm-enum-any-case', { token: TOKEN, android: { priority: 'HIGH', notification: { priority: 'MAX', visibility: 'Public', proxy: 'DENY' } } }),
  ok('fcm-free-form-objects', { token: TOKEN, webpush: { notification: { title: 't', requireInteraction: true, actions: [{ action: 'a', title: 'A' }] } }, apns: { payload: { aps: { 'interruption-level': 'time-sensitive' }, custom: { any: 1 } } } }),
  ok('fcm-data-keys-near-reserved', { token: TOKEN, data: { fromGym: 'berlin', googleMapsUrl: 'https://maps.example.com', 'gcm.n.e': '1' } }),
]
