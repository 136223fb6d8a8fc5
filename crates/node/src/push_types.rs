//! The Push as TypeScript sees it: firebase-admin's `Message` plus pushq's fields.
//! Type declarations only: pushes reach Rust as JSON and are validated by pushq-model.

#![allow(missing_docs)] // the napi derive adds undocumented items; every field has its own `///`

use napi_derive::napi;

// `Push` itself is a union with one member per target field, each extending this struct. napi-rs
// derives no union of interfaces, so it lives in `crates/node/dts-header.d.ts`, which
// `napi build` puts at the head of `index.d.ts` (package.json `napi.dtsHeaderFile`).
/// What every {@link Push} carries besides its one target field: the message and pushq's options.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct PushBase {
    /// The push id, when the caller chooses it: a UUID (hyphenated). A push enqueued again with
    /// the same id is delivered once, so a push whose `enqueuePush` rejected with
    /// `PUSHQ_QUEUE_UNKNOWN` is enqueued again with `id: err.pushId`. Without it, pushq gives the
    /// push a new UUIDv7.
    pub id: Option<String>,
    /// Pushes with the same key are delivered once per device (1–128 printable ASCII
    /// characters, no spaces); a later push with the same key is recorded `duplicate` for the
    /// devices it already reached. Not the SQS deduplication id, which is the push id.
    pub idempotency_key: Option<String>,
    /// Seconds SQS holds the push before delivery (0–900; standard queues only).
    /// @default 0
    pub delay_seconds: Option<u32>,
    /// A label recorded with each delivery (at most 100 characters), e.g. `"promo"`; what
    /// users opt out of (`Preferences.optOut`), frequency caps count and
    /// `PUSHQ_CRITICAL_CATEGORIES` names.
    pub category: Option<String>,
    /// An advertising push (Korea's Network Act art. 50): every title must start with
    /// `PUSHQ_AD_PREFIX` (default `(광고)`) and the target must be `userId`, `userIds` or
    /// `audience`. Only
    /// users with advertising consent get it, and between 21:00 and 08:00 (their time) only those
    /// with night-time consent; the others wait until 08:00.
    pub advertising: Option<bool>,
    /// Which of the deployment's apps (Firebase projects) sends the push: a key of its
    /// credentials map (1–64 characters of `A-Z a-z 0-9 _ . -`). A `userId` push reaches the
    /// user's devices of this app only. A push for an app the deployment has no key for waits
    /// in the queue (then the DLQ) until the key is added.
    /// @default the client's `app` option, else `PUSHQ_APP`, else `'default'`
    pub app: Option<String>,
    /// Not sent after this time: a push still on the queue then (a slow queue, a DLQ redriven
    /// days later) is recorded `expired`. A time already past is `PUSHQ_INVALID_PUSH`.
    #[napi(ts_type = "Date | string")]
    pub expires_at: Option<String>,
    /// When to send the push (a `Date`, or ISO-8601 with a time zone): up to 365 days ahead, not
    /// with `delaySeconds`. Within 900 s it is an SQS delay; further ahead an EventBridge
    /// Scheduler schedule (`schedulerRoleArn` and `databaseUrl` needed), which `cancelPush` can
    /// delete. A copy that arrives early waits; a late one is sent unless `expiresAt` has
    /// passed. A time already past (by more than a second), too far ahead, or not before
    /// `expiresAt` is `PUSHQ_INVALID_PUSH` naming `sendAt`; nothing is scheduled.
    #[napi(ts_type = "Date | string")]
    pub send_at: Option<String>,
    /// Arbitrary key/value data for the app; values must be strings.
    #[napi(ts_type = "Record<string, string>")]
    pub data: Option<String>,
    /// The notification shown on every platform.
    pub notification: Option<Notification>,
    /// Android-specific options.
    pub android: Option<AndroidConfig>,
    /// Apple (APNs) specific options.
    pub apns: Option<ApnsConfig>,
    /// Web push specific options.
    pub webpush: Option<WebpushConfig>,
    /// Options for all platforms.
    pub fcm_options: Option<FcmOptions>,
}

/// A basic notification shown on all platforms.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct Notification {
    /// The title.
    pub title: Option<String>,
    /// The body text.
    pub body: Option<String>,
    /// URL of an image to show (http or https).
    pub image_url: Option<String>,
}

/// Options for all platforms.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct FcmOptions {
    /// Label for the message's analytics data.
    pub analytics_label: Option<String>,
}

/// Android-specific options (firebase-admin's `AndroidConfig`).
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct AndroidConfig {
    /// Collapse key: only the latest message with a key is kept while the device is offline.
    pub collapse_key: Option<String>,
    /// Delivery priority.
    #[napi(ts_type = "'high' | 'normal'")]
    pub priority: Option<String>,
    /// How long (milliseconds) FCM keeps the message while the device is offline.
    pub ttl: Option<f64>,
    /// Package name the registration tokens must match.
    pub restricted_package_name: Option<String>,
    /// Android data; overrides `Push.data` for Android. Values must be strings.
    #[napi(ts_type = "Record<string, string>")]
    pub data: Option<String>,
    /// The Android notification.
    pub notification: Option<AndroidNotification>,
    /// Android options of the FCM SDK.
    pub fcm_options: Option<AndroidFcmOptions>,
    /// Deliver to the app while the device is in direct boot mode.
    pub direct_boot_ok: Option<bool>,
    /// Deliver even when the device is bandwidth constrained.
    pub bandwidth_constrained_ok: Option<bool>,
    /// Deliver even on a restricted satellite network.
    pub restricted_satellite_ok: Option<bool>,
}

/// An Android notification (firebase-admin's `AndroidNotification`).
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct AndroidNotification {
    /// The title; overrides `Push.notification.title`.
    pub title: Option<String>,
    /// The body; overrides `Push.notification.body`.
    pub body: Option<String>,
    /// Image URL; overrides `Push.notification.imageUrl`.
    pub image_url: Option<String>,
    /// Icon resource name.
    pub icon: Option<String>,
    /// Icon color as `#rrggbb`.
    pub color: Option<String>,
    /// Sound resource name.
    pub sound: Option<String>,
    /// Replaces an existing notification with the same tag.
    pub tag: Option<String>,
    /// Activity to open when the notification is tapped.
    pub click_action: Option<String>,
    /// String resource key for the body.
    pub body_loc_key: Option<String>,
    /// Arguments of `bodyLocKey` (requires `bodyLocKey`).
    pub body_loc_args: Option<Vec<String>>,
    /// String resource key for the title.
    pub title_loc_key: Option<String>,
    /// Arguments of `titleLocKey` (requires `titleLocKey`).
    pub title_loc_args: Option<Vec<String>>,
    /// Notification channel id.
    pub channel_id: Option<String>,
    /// Ticker text for accessibility.
    pub ticker: Option<String>,
    /// Keep the notification when the user taps it.
    pub sticky: Option<bool>,
    /// When the event happened. A `Date`, or its ISO string as JSON carries it.
    #[napi(ts_type = "Date | string")]
    pub event_timestamp: Option<String>,
    /// Show only on this device (not bridged to wearables).
    pub local_only: Option<bool>,
    /// Notification priority.
    #[napi(ts_type = "'min' | 'low' | 'default' | 'high' | 'max'")]
    pub priority: Option<String>,
    /// Vibration pattern in milliseconds.
    pub vibrate_timings_millis: Option<Vec<f64>>,
    /// Use the default vibration pattern.
    pub default_vibrate_timings: Option<bool>,
    /// Use the default sound.
    pub default_sound: Option<bool>,
    /// LED settings.
    pub light_settings: Option<LightSettings>,
    /// Use the default LED settings.
    pub default_light_settings: Option<bool>,
    /// Lock-screen visibility.
    #[napi(ts_type = "'private' | 'public' | 'secret'")]
    pub visibility: Option<String>,
    /// Count shown on the app icon badge.
    pub notification_count: Option<u32>,
    /// Whether the notification may be proxied.
    #[napi(ts_type = "'allow' | 'deny' | 'if_priority_lowered'")]
    pub proxy: Option<String>,
}

/// LED settings of an Android notification.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct LightSettings {
    /// LED color as `#rrggbb` or `#rrggbbaa`.
    pub color: String,
    /// Milliseconds the LED is on.
    pub light_on_duration_millis: f64,
    /// Milliseconds the LED is off.
    pub light_off_duration_millis: f64,
}

/// Android options of the FCM SDK.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct AndroidFcmOptions {
    /// Label for the message's analytics data.
    pub analytics_label: Option<String>,
}

/// Apple-specific options (firebase-admin's `ApnsConfig`).
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct ApnsConfig {
    /// APNs request headers, e.g. `apns-priority`. Values must be strings.
    #[napi(ts_type = "Record<string, string>")]
    pub headers: Option<String>,
    /// The APNs payload: `aps` plus any custom keys.
    #[napi(ts_type = "ApnsPayload & Record<string, unknown>")]
    pub payload: Option<ApnsPayload>,
    /// APNs options of the FCM SDK.
    pub fcm_options: Option<ApnsFcmOptions>,
    /// Live Activity push token.
    pub live_activity_token: Option<String>,
}

/// The APNs payload.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct ApnsPayload {
    /// The `aps` dictionary, with any other keys APNs takes (`'interruption-level'`,
    /// `'relevance-score'`, Live Activity fields), as firebase-admin's `Aps` allows.
    #[napi(ts_type = "Aps & Record<string, unknown>")]
    pub aps: Aps,
}

/// The `aps` dictionary (keys are hyphenated for APNs by pushq, as firebase-admin does).
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct Aps {
    /// Alert text, or an alert object.
    #[napi(ts_type = "string | ApsAlert")]
    pub alert: Option<String>,
    /// App icon badge number.
    pub badge: Option<u32>,
    /// Sound file name, or a critical-alert sound.
    #[napi(ts_type = "string | CriticalSound")]
    pub sound: Option<String>,
    /// Wake the app in the background.
    pub content_available: Option<bool>,
    /// Let a notification service extension modify the notification.
    pub mutable_content: Option<bool>,
    /// Notification category (actions).
    pub category: Option<String>,
    /// Groups notifications into a thread.
    pub thread_id: Option<String>,
}

/// An APNs alert object.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct ApsAlert {
    /// Title.
    pub title: Option<String>,
    /// Subtitle.
    pub subtitle: Option<String>,
    /// Body.
    pub body: Option<String>,
    /// Localization key of the body.
    pub loc_key: Option<String>,
    /// Arguments of `locKey` (requires `locKey`).
    pub loc_args: Option<Vec<String>>,
    /// Localization key of the title.
    pub title_loc_key: Option<String>,
    /// Arguments of `titleLocKey` (requires `titleLocKey`).
    pub title_loc_args: Option<Vec<String>>,
    /// Localization key of the subtitle.
    pub subtitle_loc_key: Option<String>,
    /// Arguments of `subtitleLocKey` (requires `subtitleLocKey`).
    pub subtitle_loc_args: Option<Vec<String>>,
    /// Localization key of the action button.
    pub action_loc_key: Option<String>,
    /// Launch image file name.
    pub launch_image: Option<String>,
}

/// A critical-alert sound.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct CriticalSound {
    /// Mark the sound critical.
    pub critical: Option<bool>,
    /// Sound file name (required).
    pub name: String,
    /// Volume from 0 to 1.
    pub volume: Option<f64>,
}

/// APNs options of the FCM SDK.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct ApnsFcmOptions {
    /// Label for the message's analytics data.
    pub analytics_label: Option<String>,
    /// URL of an image to show (http or https).
    pub image_url: Option<String>,
}

/// Web push options (firebase-admin's `WebpushConfig`).
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct WebpushConfig {
    /// Web push headers, e.g. `TTL`, `Urgency`. Values must be strings.
    #[napi(ts_type = "Record<string, string>")]
    pub headers: Option<String>,
    /// Web push data. Values must be strings.
    #[napi(ts_type = "Record<string, string>")]
    pub data: Option<String>,
    /// A Web Notification (firebase-admin's `WebpushNotification`: any other field of the
    /// Notification API is allowed too).
    #[napi(ts_type = "WebpushNotification & Record<string, unknown>")]
    pub notification: Option<WebpushNotification>,
    /// Web options of the FCM SDK.
    pub fcm_options: Option<WebpushFcmOptions>,
}

/// A Web Notification (firebase-admin's `WebpushNotification`).
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct WebpushNotification {
    /// Title.
    pub title: Option<String>,
    /// Body text.
    pub body: Option<String>,
    /// Icon URL.
    pub icon: Option<String>,
    /// Buttons shown with the notification.
    pub actions: Option<Vec<WebpushNotificationAction>>,
    /// Badge URL (a small monochrome image).
    pub badge: Option<String>,
    /// Any data for the service worker.
    #[napi(ts_type = "any")]
    pub data: Option<String>,
    /// Text direction.
    #[napi(ts_type = "'auto' | 'ltr' | 'rtl'")]
    pub dir: Option<String>,
    /// Image URL shown in the notification.
    pub image: Option<String>,
    /// Language tag (BCP 47).
    pub lang: Option<String>,
    /// Alert again when a notification with the same tag replaces this one.
    pub renotify: Option<bool>,
    /// Stay until the user acts on it.
    pub require_interaction: Option<bool>,
    /// No sound or vibration.
    pub silent: Option<bool>,
    /// Replaces an existing notification with the same tag.
    pub tag: Option<String>,
    /// Time of the notification, in milliseconds since the Unix epoch.
    pub timestamp: Option<f64>,
    /// Vibration pattern.
    #[napi(ts_type = "number | Array<number>")]
    pub vibrate: Option<String>,
}

/// A button of a Web Notification.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct WebpushNotificationAction {
    /// The action's id, given back to the service worker.
    pub action: String,
    /// Button icon URL.
    pub icon: Option<String>,
    /// Button text.
    pub title: String,
}

/// Web options of the FCM SDK.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct WebpushFcmOptions {
    /// HTTPS link opened when the notification is clicked.
    pub link: Option<String>,
}
