//! Presale's one error type and its HTTP rendering.
//!
//! Variants a citizen or staff member must be told about carry a message in Persian and
//! English (the [`msg`] catalogue); internal causes are logged with their chain and
//! answered with a generic message, never shown.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use service_kit::t;
use service_kit::Text;

use crate::domain::Refusal;
use crate::queue::QueueError;
use crate::store::StoreError;

/// Every user-facing message of presale, in one place so translations stay consistent.
pub mod msg {
    use service_kit::{t, Text};

    /// The ministry console's texts.
    pub mod console {
        use service_kit::{t, Text};
        pub const E_NO_MAKER_COMMITMENT: Text = t!("تعهد بذر خودروساز هنوز از درگاه خود خودروساز (اعتبارنامه او در امتا، یا صفحه نماینده او در سامانه) برای این شماره مجوز نرسیده است.", "The manufacturer's seed commitment for this license number has not yet arrived through the manufacturer's own channel (its credentials at emta, or its representative's console page).");
        pub const E_NO_MINISTRY_COMMITMENT: Text = t!("تعهد بذر وزارت برای این شماره مجوز را کارمند دیگری جز پیشنهاددهنده باید در صفحه تعهدها ثبت کند.", "The ministry's seed commitment for this license number must be entered on the commitments page by a member of staff other than the proposer (and not enrolled by the same administrator).");
        pub const E_COMMITMENT_FORMAT: Text = t!("تعهد باید خروجی presale commit باشد (۴۳ نویسه base64url) و شماره مجوز ۳ تا ۳۲ حرف لاتین، رقم یا خط تیره.", "A commitment is the output of presale commit (43 base64url characters), and a license number 3 to 32 letters, digits or dashes.");
        pub const E_COMMITMENT_EXISTS: Text = t!("این طرف برای این شماره مجوز پیش‌تر تعهد ثبت کرده است؛ تعهد را نمی‌توان عوض کرد.", "This party has already committed for this license number; a commitment cannot be replaced.");
        pub const E_COMMITMENT_DEPENDENT: Text = t!("تعهد وزارت و تعهد نماینده خودروساز را حساب‌هایی ثبت کرده‌اند که یک نفر پشت هر دو است (یک مدیر هر دو را ساخته است)؛ دو طرف بذر باید دو نفر باشند.", "The ministry's and the manufacturer's representative's commitments were entered by accounts with someone behind both (one administrator enrolled both); a seed's two parties must be two people.");
        pub const E_COMMITMENT_MISMATCH: Text = t!(
            "طرف‌های بذر این پیشنهاد همان تعهدهای ثبت‌شده نیستند.",
            "This proposal's seed parties are not the commitments recorded for it."
        );
        pub const SEED_COMMITMENTS: Text = t!("تعهدهای بذر", "Seed commitments");
        pub const SEED_COMMITMENTS_EXPLAINED: Text = t!("طرف‌های بذر را صادرکننده وارد نمی‌کند: تعهد خودروساز از درگاه خود او می‌رسد و تعهد وزارت را کارمند دیگری ثبت می‌کند.", "The issuer does not type the seed's parties: the manufacturer's commitment arrives through its own channel, and another member of staff enters the ministry's.");
        pub const COMMITTED_BY: Text = t!("ثبت‌کننده:", "Entered by");
        pub const E_NO_CHANNEL: Text = t!(
            "درگاه تعهد خودروسازها پیکربندی نشده است.",
            "The manufacturers' commitment channel is not configured."
        );
        pub const E_TOKEN: Text = t!(
            "توکن دسترسی معتبر (client_credentials از امتا) لازم است.",
            "A valid access token (client_credentials from emta) is required."
        );
        pub const E_SCOPE: Text = t!(
            "این توکن دامنه presale.seed را ندارد.",
            "This token does not carry the presale.seed scope."
        );
        pub const OUTFLOW: Text = t!("کنترل جریان پذیرش", "Outflow control");
        pub const PAUSE_EXPLAINED: Text = t!("توقف پذیرش، مجوز را معلق نمی‌کند: کسی جای خود یا مهلتش را از دست نمی‌دهد، ثبت‌نام و ثبت درخواست ادامه دارد و پایان پذیرش به اندازه توقف عقب می‌رود. یک صادرکننده کافی است؛ در گزارش عمومی ثبت می‌شود.", "Pausing admissions does not suspend the license: nobody loses their place or their time, joining and applying go on, and the close moves on by the pause's length. One issuer suffices; it is in the public log.");
        pub const PAUSE: Text = t!("توقف پذیرش", "Pause admissions");
        pub const UNPAUSE: Text = t!("ازسرگیری پذیرش", "Resume admissions");
        pub const ADMISSIONS_PAUSED: Text = t!("پذیرش متوقف است", "admissions paused");
        pub const PROPOSE_MAX_ACTIVE: Text = t!("پیشنهاد سقف تازه", "Propose this number");
        pub const EXTEND_BY: Text = t!(
            "افزودن به مهلت ثبت درخواست (دقیقه)",
            "More time to apply (minutes)"
        );
        pub const EXTEND_EXPLAINED: Text = t!("برای همه پذیرفته‌شدگانی که مهلتشان نگذشته (پس از یک قطعی)؛ ۱ تا ۱۴۴۰ دقیقه.", "For everyone admitted whose time has not run out (after an outage); 1 to 1440 minutes.");
        pub const PROPOSE_EXTEND: Text = t!("پیشنهاد تمدید مهلت", "Propose the extension");
        pub const DASHBOARD: Text = t!("داشبورد زنده", "Live dashboard");
        pub const JOINED: Text = t!("پیوستن", "joins");
        pub const ADMITTED: Text = t!("پذیرفته‌شده تا کنون", "Admitted so far");
        pub const ACCEPTED_SHORT: Text = t!("درخواست پذیرفته", "accepted applications");
        pub const PER_MINUTE_LAST_HOUR: Text = t!(
            "در دقیقه، یک ساعت گذشته؛ بیشینه",
            "per minute, the last hour; top"
        );
        pub const ENTRIES: Text = t!("ثبت‌نام‌های قرعه‌کشی", "Lottery entries");
        pub const DRAW: Text = t!("قرعه‌کشی", "The draw");
        pub const DRAWN: Text = t!("انجام شده", "drawn");
        pub const FROZEN: Text = t!(
            "فهرست قطعی شده؛ در انتظار بذر",
            "list frozen; waiting for the seed"
        );
        pub const OPEN: Text = t!("ثبت‌نام باز است", "registration open");
        pub const WAITING: Text = t!("در صف", "Waiting");
        pub const LIVE: Text = t!("پذیرفته و در مهلت", "Admitted, within their time");
        pub const ABANDONED: Text = t!(
            "پذیرفته و بازنگشته (مهلت گذشته)",
            "Admitted and did not come back"
        );
        pub const RATE_SET_ACHIEVED: Text =
            t!("نرخ تعیین‌شده / دقیقه گذشته", "Rate set / the last minute");
        pub const OLDEST_WAITING: Text = t!("طولانی‌ترین انتظار", "The longest wait now");
        pub const WAIT_TO_ADMISSION: Text = t!("انتظار تا پذیرش", "Wait to admission");
        pub const REFUSALS: Text = t!("درخواست‌های ردشده (این نمونه)", "Refusals (this replica)");
        pub const AS_OF: Text = t!("زمان", "As of");
        pub const SAME_PERSON: Text = t!("تأییدکننده و پیشنهاددهنده یک نفرند: یکی دیگری را ثبت کرده یا هر دو را یک مدیر ثبت کرده است. تأیید با صادرکننده مستقل دیگری است.", "The approver and the proposer are one person: one enrolled the other, or one administrator enrolled both. Another, independent issuer must approve.");
        pub const F_MINISTRY_SECRET: Text = t!(
            "راز وزارت (همان که با presale commit ministry ساخته شد)",
            "The ministry's secret (as presale commit ministry made it)"
        );
        pub const F_MAKER_SECRET: Text = t!(
            "راز خودروساز (همان که با presale commit ساخته شد)",
            "The manufacturer's secret (as presale commit made it)"
        );
        pub const REVEAL_MAKER: Text =
            t!("آشکار کردن سهم خودروساز", "Reveal the manufacturer's share");
        pub const REVEAL_MINISTRY: Text = t!("آشکار کردن سهم وزارت", "Reveal the ministry's share");
        pub const E_UNKNOWN_OBSERVER: Text = t!(
            "ناظری با این نام ثبت نشده یا غیرفعال است.",
            "No observer is registered under this name, or it is disabled."
        );
        pub const E_OBSERVER_SIGNATURE: Text = t!("این بیانیه با کلید ثبت‌شده این ناظر امضا نشده یا قالب آن درست نیست.", "This statement is not signed with the key registered for this observer, or is not well formed.");
        pub const E_NOT_SEED_CLIENT: Text = t!("تعهد خودروساز فقط با کلاینت بذر خود او ({خودروساز}-seed) پذیرفته است، نه با کلاینت فروشگاه.", "A manufacturer's commitment is taken from its own seed client ({manufacturer}-seed) only, never the storefront's client.");
        pub const COMMITMENTS: Text = t!("صفحه تعهدها", "The commitments page");
        pub const MINISTRY_COMMITMENT_EXPLAINED: Text = t!("تعهد وزارت را با presale commit ministry روی رایانه خود بسازید و راز را نزد خود نگه دارید؛ اینجا فقط تعهد را بچسبانید. پیشنهاددهنده مجوز نمی‌تواند تعهد وزارت را ثبت کرده باشد.", "Make the ministry's commitment with presale commit ministry on your own computer and keep the secret; paste only the commitment here. Whoever proposes the license cannot be who entered the ministry's commitment.");
        pub const ENTER_COMMITMENT: Text = t!("ثبت تعهد وزارت", "Enter the ministry's commitment");
        pub const F_COMMITMENT: Text = t!(
            "تعهد (خروجی presale commit)",
            "Commitment (from presale commit)"
        );

        pub const CONSOLE: Text = t!("سامانه وزارت", "Ministry console");
        pub const HOME: Text = t!("پیشخوان", "Home");
        pub const PROPOSE_LICENSE: Text =
            t!("پیشنهاد صدور مجوز پیش‌فروش", "Propose a presale license");
        pub const PROPOSE_EXPLAINED: Text = t!("مجوز پس از تأیید یک صادرکننده دیگر صادر می‌شود. تاریخ‌ها شمسی و به وقت تهران‌اند؛ رقم فارسی یا لاتین، هر دو پذیرفته است.", "The license is issued when another issuer approves it. Dates are Jalali, in Tehran time; Persian or Latin digits are both fine.");
        pub const STAFF: Text = t!("کارکنان", "Staff");
        pub const AUDIT_LOG: Text = t!("گزارش رویدادها", "Audit log");
        pub const SIGN_OUT: Text = t!("خروج", "Sign out");
        pub const SIGN_IN: Text = t!("ورود", "Sign in");
        pub const USERNAME: Text = t!("نام کاربری", "Username");
        pub const USERNAME_RULE: Text = t!(
            "۳ تا ۳۲ حرف کوچک لاتین، رقم، نقطه یا خط تیره، که به ‎-seed‎ ختم نشود.",
            "3 to 32 lowercase letters, digits, dots or dashes, not ending in -seed."
        );
        pub const PASSWORD: Text = t!("گذرواژه", "Password");
        pub const TOTP: Text = t!("کد یکبارمصرف (TOTP)", "One-time code (TOTP)");
        pub const WRONG_CREDENTIALS: Text = t!(
            "نام کاربری، گذرواژه یا کد یکبارمصرف نادرست است.",
            "Wrong username, password or one-time code."
        );
        pub const NOT_YOUR_ROLE: Text =
            t!("این کار در نقش شما نیست.", "Your role does not allow this.");
        pub const ROLE: Text = t!("نقش", "Role");
        pub const ROLE_ADMINISTRATOR: Text = t!("مدیر کارکنان", "Administrator");
        pub const ROLE_ISSUER: Text = t!("صادرکننده مجوز", "Issuer");
        pub const ROLE_AUDITOR: Text = t!("حسابرس", "Auditor");
        pub const ROLE_INSPECTOR: Text = t!("بازرس", "Inspector");
        pub const ROLE_REPRESENTATIVE: Text =
            t!("نماینده خودروساز", "Manufacturer's representative");
        pub const REPRESENTS: Text = t!("نماینده", "Represents");
        pub const F_REPRESENTED: Text = t!(
            "خودروساز (فقط برای نماینده خودروساز)",
            "Manufacturer (a representative's only)"
        );
        pub const E_REPRESENTED: Text = t!("نماینده خودروساز باید برای یکی از خودروسازهای ثبت‌شده و فعال ساخته شود، و فقط نماینده خودروساز خودروساز دارد.", "A manufacturer's representative is enrolled for one of the registered, active manufacturers, and only a representative has a manufacturer.");
        pub const NO_ROLE_CHANGE_FOR_REPRESENTATIVE: Text = t!("نقش نماینده خودروساز عوض نمی‌شود و هیچ حسابی نماینده نمی‌شود: حساب را غیرفعال کنید و حساب تازه بسازید.", "A representative's role does not change, and no account becomes one: disable the account and enrol a new one.");
        pub const ENTER_MAKER_COMMITMENT: Text = t!(
            "ثبت تعهد بذر خودروساز",
            "Enter the manufacturer's seed commitment"
        );
        pub const MAKER_COMMITMENT_EXPLAINED: Text = t!("تعهد خودروساز را با presale commit و نام خودروساز روی رایانه خود بسازید و راز را نزد خود نگه دارید؛ اینجا فقط تعهد را بچسبانید. این صفحه به خودروساز شما بسته است.", "Make the manufacturer's commitment with presale commit and the manufacturer's name on your own computer and keep the secret; paste only the commitment here. This page is bound to your manufacturer.");
        pub const YOUR_CAMPAIGNS: Text =
            t!("پیش‌فروش‌های خودروساز شما", "Your manufacturer's campaigns");
        pub const CHECK: Text = t!("بررسی بدون ثبت", "Check without proposing");
        pub const PROPOSE: Text = t!("پیشنهاد صدور", "Propose");
        pub const OPTIONAL: Text = t!("اختیاری", "optional");
        pub const FORM_HAS_ERRORS: Text = t!(
            "فرم خطا دارد؛ خطای هر خانه کنار آن آمده است.",
            "The form has errors; each is shown beside its field."
        );
        pub const F_LICENSE_NO: Text = t!("شماره مجوز", "License number");
        pub const F_MANUFACTURER: Text = t!("خودروساز", "Manufacturer");
        pub const F_MODEL: Text = t!("مدل خودرو", "Model");
        pub const F_KIND: Text = t!("نوع فروش", "Kind of sale");
        pub const F_SELECTION: Text = t!("شیوه انتخاب", "Selection");
        pub const F_UNITS: Text = t!("تعداد (سقف)", "Units (the cap)");
        pub const F_UNIT_PRICE: Text = t!("قیمت هر خودرو (ریال)", "Unit price (rials)");
        pub const F_DOWN_PAYMENT: Text = t!("پیش‌پرداخت (ریال)", "Down payment (rials)");
        pub const F_OPENS_AT: Text = t!(
            "آغاز ثبت‌نام (تاریخ شمسی و ساعت)",
            "Registration opens (Jalali date and time)"
        );
        pub const F_CLOSES_AT: Text = t!(
            "پایان ثبت‌نام (تاریخ شمسی و ساعت؛ بی ساعت: ۲۳:۵۹)",
            "Registration closes (Jalali date and time; without a time: 23:59)"
        );
        pub const F_DELIVERY: Text =
            t!("مهلت تحویل (تاریخ شمسی)", "Delivery deadline (Jalali date)");
        pub const F_RATE: Text = t!("نرخ پذیرش در دقیقه", "Admissions per minute");
        pub const F_MAX_ACTIVE: Text = t!("حداکثر پذیرفته‌شدگان هم‌زمان", "Most admitted at once");
        pub const F_APPLY_WINDOW: Text = t!(
            "مهلت ثبت درخواست پس از پذیرش (دقیقه)",
            "Time to apply once admitted (minutes)"
        );
        pub const F_MIN_AGE: Text = t!("حداقل سن", "Minimum age");
        pub const F_ROUND: Text = t!(
            "دوره فروش (یک درخواست در هر دوره)",
            "Sales round (one application per round)"
        );
        pub const F_DRIVING_LICENCE: Text = t!(
            "گواهینامه رانندگی معتبر (استعلام از پلیس راهور)",
            "A valid driving licence (asked of the traffic police)"
        );
        pub const F_VEHICLE_MONTHS: Text = t!(
            "بدون خودروی شماره‌شده به نام متقاضی در این چند ماه (استعلام از سامانه شماره‌گذاری)",
            "No vehicle registered to the applicant in these many months (asked of the vehicle registry)"
        );
        pub const F_HOLD_BANKS: Text = t!(
            "بانک‌های عامل برای مسدودی پیش‌پرداخت (شناسه‌ها، با ویرگول)",
            "Participating banks for the down payment's hold (ids, comma-separated)"
        );
        pub const F_HOLD_AMOUNT: Text = t!("مبلغ مسدودی (ریال)", "Amount held (rials)");
        pub const F_HOLD_TITLE: Text =
            t!("عنوان حساب وکالتی این دوره", "The round's account title");
        pub const F_HOLD_BEFORE: Text = t!("مسدودی لازم پیش از", "Hold required before");
        pub const HOLD_BEFORE_ENTRY: Text = t!(
            "ثبت‌نام (ورود به صف یا قرعه‌کشی)",
            "registering (joining the queue or the lottery)"
        );
        pub const HOLD_BEFORE_APPLY: Text = t!("ثبت درخواست", "applying");
        pub const E_HOLD: Text = t!(
            "مسدودی: ۱ تا ۲۰ بانک با شناسه‌های جدا (حروف کوچک لاتین، رقم، خط تیره)، مبلغ مثبت و نه بیش از قیمت، و عنوان ۱ تا ۱۲۰ نویسه.",
            "A hold: 1 to 20 distinct bank ids (lowercase letters, digits, dashes), a positive amount no more than the price, and a title of 1 to 120 characters."
        );
        pub const YES: Text = t!("بله", "Yes");
        pub const NO: Text = t!("خیر", "No");
        pub const E_VEHICLE_MONTHS: Text = t!(
            "قاعده خودرو ۱ تا ۱۲۰ ماه را می‌شمارد.",
            "The vehicle rule counts 1 to 120 months."
        );
        pub const F_EXCLUSION_MONTHS: Text = t!(
            "محرومیت: ماه‌های پس از خرید قبلی",
            "Exclusion: months since a previous purchase"
        );
        pub const F_EXCLUSION_MAKERS: Text = t!(
            "محرومیت: خودروسازها (با ویرگول)",
            "Exclusion: manufacturers (comma-separated)"
        );
        pub const F_SEED_REVEAL: Text = t!(
            "مهلت افشای بذر پس از انجماد فهرست (ثانیه)",
            "Seconds after the freeze for the seed's reveals"
        );
        pub const F_SEED_STEPS: Text = t!("گام‌های تأخیر بذر", "The seed's delay steps");
        pub const KIND_REGULAR: Text = t!(
            "پیش‌فروش عادی (تحویل تا ۱۲ ماه)",
            "Regular presale (delivery within 12 months)"
        );
        pub const KIND_FIRM: Text = t!(
            "پیش‌فروش قطعی (تحویل تا ۹ ماه)",
            "Firm presale (delivery within 9 months)"
        );
        pub const SELECTION_QUEUE: Text = t!("صف به ترتیب ورود", "Queue, first come");
        pub const SELECTION_LOTTERY: Text = t!("قرعه‌کشی", "Lottery");
        pub const E_REQUIRED: Text = t!("این خانه را پر کنید.", "This field is required.");
        pub const E_WHOLE: Text = t!(
            "یک عدد صحیح مثبت بنویسید (جداکننده هزارگان مجاز است).",
            "Write a whole positive number (thousands separators are fine)."
        );
        pub const E_POSITIVE: Text = t!(
            "این مقدار باید بیشتر از صفر باشد.",
            "This must be more than zero."
        );
        pub const E_CHOICE: Text = t!(
            "یکی از گزینه‌ها را انتخاب کنید.",
            "Choose one of the options."
        );
        pub const E_MANUFACTURER: Text = t!(
            "این خودروساز در امتا ثبت یا فعال نیست.",
            "This manufacturer is not registered or not active at emta."
        );
        pub const E_DATE_FORMAT: Text = t!("تاریخ را به شکل سال/ماه/روز و ساعت را به شکل ساعت:دقیقه بنویسید، مثلاً ۱۴۰۵/۰۹/۱۵ ۰۹:۳۰.", "Write the date as year/month/day and the time as hour:minute, for example 1405/09/15 09:30.");
        pub const E_DATE_YEAR: Text = t!(
            "سال شمسی باید بین ۱۳۹۰ و ۱۵۰۰ باشد.",
            "The Jalali year must be between 1390 and 1500."
        );
        pub const E_DATE_NO_DAY: Text = t!("این روز در تقویم شمسی وجود ندارد (اسفند ۳۰ فقط در سال کبیسه است؛ مهر تا بهمن ۳۰ روزه‌اند).", "That day does not exist in the Jalali calendar (Esfand 30 only in leap years; Mehr to Bahman have 30 days).");
        pub const E_DATE_TIME: Text = t!(
            "ساعت از ۰۰ تا ۲۳ و دقیقه از ۰۰ تا ۵۹ است.",
            "Hours are 00 to 23 and minutes 00 to 59."
        );
        pub const E_WINDOW: Text = t!(
            "پایان ثبت‌نام باید پس از آغاز آن باشد.",
            "Registration must close after it opens."
        );
        pub const E_APPLY_WINDOW: Text = t!(
            "مهلت ثبت درخواست حداکثر ۳۰ روز است.",
            "The time to apply is at most 30 days."
        );
        pub const E_DOWN_PAYMENT: Text = t!(
            "پیش‌پرداخت نمی‌تواند از قیمت خودرو بیشتر باشد.",
            "The down payment cannot exceed the unit price."
        );
        pub const E_DEADLINE_FIRM: Text = t!("مهلت تحویل پیش‌فروش قطعی باید پس از پایان ثبت‌نام و حداکثر ۹ ماه پس از آن باشد.", "A firm presale's delivery deadline must fall after registration closes and within 9 months of it.");
        pub const E_DEADLINE_REGULAR: Text = t!("مهلت تحویل پیش‌فروش عادی باید پس از پایان ثبت‌نام و حداکثر ۱۲ ماه پس از آن باشد.", "A regular presale's delivery deadline must fall after registration closes and within 12 months of it.");
        pub const E_LICENSE_NO: Text = t!(
            "شماره مجوز: ۳ تا ۳۲ حرف لاتین، رقم یا خط تیره.",
            "License number: 3 to 32 letters, digits or dashes."
        );
        pub const E_CREDIT_CEILING: Text = t!(
            "این مجوز از سقف اعتبار خودروساز برای رتبه ستاره‌اش فراتر می‌رود (تعهدات تحویل‌نشده ضرب در پیش‌پرداخت).",
            "This license would pass the manufacturer's credit ceiling for its star rating (units not delivered times their down payment)."
        );
        pub const E_CREDIT_OVERDUE: Text = t!(
            "خودروساز تحویل معوق دارد: به ازای هر خودروی تحویل‌شده از آن پس، تنها یک واحد تازه مجاز است.",
            "The manufacturer has overdue deliveries: only one new unit is allowed per unit delivered since."
        );
        pub const E_NO_RATING: Text = t!(
            "رتبه خودروساز از سامانه هویت خوانده نشد (ثبت‌نشده، تعلیق یا منقضی): زیر سقف اعتبار مجوزی صادر نمی‌شود.",
            "The manufacturer's rating could not be read from the IdP (unregistered, suspended or expired): no license is issued under a credit ceiling."
        );
        pub const DELIVERIES: Text =
            t!("تحویل‌ها و خسارت تأخیر", "Deliveries and late compensation");
        pub const RATES: Text = t!("جدول نرخ خسارت تأخیر", "Late-delivery compensation rates");
        pub const ADD_RATE: Text = t!("افزودن نرخ", "Add a rate");
        pub const RECORD_STAGE: Text = t!("ثبت", "Record");
        pub const E_RATE_FORM: Text = t!(
            "نرخ: نوع فروش، تاریخ اجرا از امروز به بعد (مثلاً ۱۴۰۶/۰۱/۰۱) و درصد ماهانه میان ۰ و ۱۰۰ با حداکثر دو رقم اعشار.",
            "A rate: the kind of sale, the date it takes effect, today or later (say 1406/01/01), and a monthly percentage from 0 to 100 with at most two decimals."
        );
        pub const E_RATE_EXISTS: Text = t!(
            "برای این نوع فروش از همین زمان نرخی ثبت شده است؛ نرخ‌ها تغییر نمی‌کنند، نرخ تازه با تاریخ تازه ثبت کنید.",
            "This kind already has a rate from that moment; rates are kept as written: add a new one from a new date."
        );
        pub const E_STAGE_FORM: Text = t!(
            "مرحله: قرارداد، پرداخت (با مبلغ ریالی) یا تحویل.",
            "A stage: contract, payment (with its amount in rials) or delivered."
        );
        pub const E_STAGE_NO_APPLICATION: Text = t!(
            "درخواست پذیرفته‌شده‌ای از این خودروساز با این کد پیگیری نیست.",
            "No accepted application of this manufacturer has that tracking code."
        );
        pub const E_STAGE_RECORDED: Text = t!(
            "این مرحله پیش‌تر ثبت شده است (قرارداد و تحویل یک بار ثبت می‌شوند).",
            "This stage is recorded already (a contract and a delivery are recorded once)."
        );
        pub const E_STAGE_NO_CONTRACT: Text = t!(
            "پرداخت یا تحویل پس از ثبت قرارداد ثبت می‌شود.",
            "A payment or a delivery is recorded after the contract."
        );
        pub const E_STAGE_DELIVERED: Text = t!(
            "خودرو تحویل شده است: مرحله دیگری ثبت نمی‌شود.",
            "The car is delivered: nothing more is recorded."
        );
        pub const E_STAGE_AMOUNT: Text = t!(
            "پرداخت مبلغی مثبت است و جمع پرداخت‌ها از قیمت خودرو بیشتر نمی‌شود؛ مراحل دیگر مبلغ ندارند.",
            "A payment is a positive amount, and payments total at most the unit price; other stages carry none."
        );
        pub const E_STAGE_TIME: Text = t!("هر مرحله با زمان رخ‌دادنش ثبت می‌شود: نه پیش از درخواست یا آخرین مرحله، نه در آینده و نه بیش از سه روز پیش.", "A stage is dated when it happened: not before the application or the last stage, not in the future, and at most three days ago.");
        pub const E_STAGE_KEY: Text = t!(
            "این کلید درخواست برای مرحله دیگری به کار رفته است.",
            "This request key was used for another stage."
        );
        pub const E_LICENSE_EXISTS: Text = t!(
            "این شماره مجوز قبلاً صادر شده است.",
            "This license number has been issued already."
        );
        pub const E_PARTIES: Text = t!("بذر به تعهد دست‌کم دو طرف متمایز نیاز دارد، با تعهدهای متفاوت (SHA-256 در base64url).", "The seed needs commitments from at least two distinct parties, each different (base64url SHA-256).");
        pub const E_TIMES: Text = t!(
            "زمان‌ها باید در بازه معقول باشند.",
            "The times must be in a sensible range."
        );
        pub const E_MIN_AGE: Text = t!(
            "حداقل سن باید بین ۰ و ۱۲۰ سال باشد.",
            "The minimum age must be 0 to 120 years."
        );
        pub const E_EXCLUSION: Text = t!(
            "قاعده محرومیت دست‌کم یک خودروساز و ۱ تا ۱۲۰ ماه می‌خواهد.",
            "The exclusion rule names at least one manufacturer and 1 to 120 months."
        );
        pub const E_SEED_DELAY: Text = t!(
            "مهلت افشا ۱ ثانیه تا یک روز و گام‌های تأخیر ۱ تا ۱۰۰ میلیون است.",
            "The reveal window is 1 second to a day and the delay 1 to 100 million steps."
        );
        pub const E_RATE: Text = t!(
            "یک عدد صحیح مثبت لازم است: نرخ پذیرش در دقیقه، سقف پذیرفته‌شدگان، یا تمدید ۱ تا ۱۴۴۰ دقیقه.",
            "A whole positive number is needed: admissions per minute, the most admitted at once, or an extension of 1 to 1440 minutes."
        );
        pub const OWN_PROPOSAL: Text = t!(
            "پیشنهاد خودتان را نمی‌توانید تأیید کنید: تأیید با صادرکننده دیگری است.",
            "You cannot approve your own proposal: another issuer must."
        );
        pub const NO_PROPOSAL: Text = t!(
            "چنین پیشنهاد یا مجوزی پیدا نشد.",
            "No such proposal or license."
        );
        pub const PROPOSAL_EXPIRED: Text = t!(
            "مهلت تأیید این پیشنهاد گذشته است؛ دوباره پیشنهاد دهید.",
            "This proposal expired unapproved; propose it again."
        );
        pub const UNCHANGED: Text = t!(
            "هم‌اکنون همین وضعیت برقرار است؛ این تغییر کاری انجام نمی‌دهد.",
            "It is already so: this change would do nothing."
        );
        pub const DUPLICATE: Text = t!(
            "همین تغییر برای این مجوز در انتظار تأیید است.",
            "The same change to this license is already waiting for approval."
        );
        pub const PROPOSAL_CHANGED: Text = t!("این پیشنهاد با آنچه به شما نشان داده شد یا با آنچه پیشنهاد شده بود یکی نیست؛ صفحه آن را دوباره بخوانید.", "This proposal is not what you were shown or not what was proposed; read its page again.");
        pub const PROPOSAL: Text = t!("پیشنهاد", "Proposal");
        pub const PROPOSALS: Text = t!("پیشنهادها", "Proposals");
        pub const PROPOSED_BY: Text = t!("پیشنهاددهنده:", "Proposed by");
        pub const IN_FORCE: Text = t!("اکنون", "In force");
        pub const PROPOSED: Text = t!("پیشنهادی", "Proposed");
        pub const DIGEST: Text = t!(
            "چکیده (SHA-256) آنچه تأیید می‌کنید:",
            "Digest (SHA-256) of what you approve:"
        );
        pub const DECIDED: Text = t!("تصمیم:", "Decided:");
        pub const APPROVE: Text = t!("تأیید", "Approve");
        pub const REJECT: Text = t!("رد", "Reject");
        pub const WITHDRAW: Text = t!("پس گرفتن", "Withdraw");
        pub const REVIEW: Text = t!("بررسی و تصمیم", "Review and decide");
        pub const WAITING_FOR_SECOND: Text =
            t!("در انتظار تأیید نفر دوم", "Waiting for a second issuer");
        pub const LICENSES: Text = t!("مجوزها", "Licenses");
        pub const LICENSE: Text = t!("مجوز", "License");
        pub const NO_LICENSE: Text = t!("این مجوز پیدا نشد.", "No such license.");
        pub const NONE: Text = t!("هیچ", "None");
        pub const STATUS: Text = t!("وضعیت", "Status");
        pub const ACCEPTED: Text = t!("درخواست‌های پذیرفته / سقف", "Accepted / cap");
        pub const ACTIONS: Text = t!("اقدام‌ها", "Actions");
        pub const PROPOSE_SUSPEND: Text = t!("پیشنهاد تعلیق", "Propose to suspend");
        pub const PROPOSE_RESUME: Text = t!("پیشنهاد ازسرگیری", "Propose to resume");
        pub const PROPOSE_RATE: Text = t!("پیشنهاد نرخ تازه", "Propose this rate");
        pub const SEED: Text = t!("بذر قرعه و ترتیب", "The seed");
        pub const SEED_PARTY: Text = t!("تعهد بذر", "Seed commitment");
        pub const REVEALED: Text = t!("آشکار شده", "revealed");
        pub const NOT_REVEALED: Text = t!("هنوز آشکار نشده", "not revealed yet");
        pub const FROZEN_LIST: Text = t!("فهرست قطعی:", "Frozen list:");
        pub const SIGNED_HEAD: Text = t!("آخرین سرخط امضاشده", "Latest signed tree head");
        pub const PUBLIC_LOG: Text = t!("گزارش شفافیت عمومی", "The public transparency log");
        pub const HISTORY: Text = t!("تاریخچه", "History");
        pub const CHAIN_BROKEN: Text = t!(
            "زنجیره گزارش رویدادها دستکاری شده است.",
            "The audit log's hash chain is broken."
        );
        pub const CHAIN_UNCHECKED: Text = t!(
            "زنجیره اکنون بررسی نشد.",
            "The chain could not be checked now."
        );
        pub const ADD_STAFF: Text = t!("افزودن کارمند", "Add a staff member");
        pub const ADDED: Text = t!("افزوده در", "Added");
        pub const DISABLED: Text = t!("غیرفعال", "Disabled");
        pub const ENABLED: Text = t!("فعال", "Enabled");
        pub const DISABLE: Text = t!("غیرفعال کردن", "Disable");
        pub const ENABLE: Text = t!("فعال کردن", "Enable");
        pub const END_SESSIONS: Text = t!("پایان همه نشست‌ها", "End all sessions");
        pub const RESET_TOTP: Text = t!("ثبت دوباره TOTP", "Reset TOTP");
        pub const CHANGE_ROLE: Text = t!("تغییر نقش", "Change role");
        pub const ENROLMENT: Text = t!("ثبت کد یکبارمصرف", "TOTP enrolment");
        pub const SHOWN_ONCE: Text = t!(
            "این اطلاعات فقط همین یک بار نشان داده می‌شود؛ آن را حضوری به خود کارمند بدهید.",
            "This is shown only this once; hand it to the staff member in person."
        );
        pub const TOTP_SECRET: Text = t!("کلید TOTP", "TOTP secret");
        pub const STAFF_EXISTS: Text = t!(
            "کارمندی با این نام کاربری هست.",
            "A staff member with this username exists."
        );
        pub const NO_STAFF: Text = t!("چنین کارمندی نیست.", "No such staff member.");
        pub const NOT_YOURSELF: Text = t!(
            "حساب خودتان را مدیر دیگری باید تغییر دهد.",
            "Another administrator must change your own account."
        );
        // ---- after the sale, part two (issue 34) ------------------------------------
        pub const COMPLAINTS: Text = t!("شکایت‌ها", "Complaints");
        pub const TRACKING: Text = t!("کد پیگیری", "Tracking code");
        pub const ABOUT: Text = t!("موضوع", "About");
        pub const FILED: Text = t!("ثبت", "Filed");
        pub const ANSWER_DUE: Text = t!("مهلت پاسخ", "Answer due");
        pub const NOW_WITH: Text = t!("اکنون نزد", "Now with");
        pub const OUTCOME: Text = t!("نتیجه", "Outcome");
        pub const OPENED: Text = t!("گشوده", "Opened");
        pub const BY: Text = t!("به دست", "By");
        pub const UNANSWERED_LATE: Text = t!(
            "خودروساز در مهلت پاسخ نداد.",
            "Unanswered past its deadline."
        );
        pub const OVERDUE_DELIVERIES: Text = t!("تحویل معوق", "Overdue deliveries");
        pub const UNANSWERED: Text = t!("بی‌پاسخ پس از مهلت", "Unanswered late");
        pub const UPHELD: Text = t!("واردشده", "Upheld");
        pub const WARRANTY_DUE: Text = t!(
            "تعویض یا بازپرداخت گارانتی",
            "Warranty replacement or refund due"
        );
        pub const WITHHELD: Text = t!("ستاره‌های کسرشده", "Stars withheld");
        pub const SUSPENDED: Text = t!("تعلیق", "Suspended");
        pub const ACTIVE: Text = t!("فعال", "Active");
        pub const CASES: Text = t!("پرونده‌های بازرسی", "Inspection cases");
        pub const CASE: Text = t!("پرونده", "Case");
        pub const NO_CASE: Text = t!("چنین پرونده‌ای نیست.", "No such case.");
        pub const NO_COMPLAINT: Text = t!("چنین شکایتی نیست.", "No such complaint.");
        pub const OPEN_CASE: Text = t!("گشودن پرونده", "Open a case");
        pub const FINDINGS: Text = t!("یافته‌ها", "Findings");
        pub const ADD_FINDING: Text = t!("ثبت یافته", "Record a finding");
        pub const ANSWER: Text = t!("پاسخ", "Answer");
        pub const SEND_ANSWER: Text = t!("ارسال پاسخ", "Send the answer");
        pub const UPHOLD: Text = t!("وارد دانستن شکایت", "Uphold");
        pub const DISMISS: Text = t!("رد شکایت", "Dismiss");
        pub const PROPOSE_MAKER_SUSPEND: Text = t!(
            "پیشنهاد تعلیق خودروساز (در سامانه هویت و همه پیش‌فروش‌هایش)",
            "Propose to suspend the manufacturer (at the IdP and in all its presales)"
        );
        pub const PROPOSE_MAKER_RESUME: Text = t!(
            "پیشنهاد رفع تعلیق خودروساز",
            "Propose to resume the manufacturer"
        );
        pub const PROPOSE_MAKER_RATE: Text = t!(
            "پیشنهاد رتبه تازه (۱ تا ۵ ستاره)",
            "Propose a new rating (1 to 5 stars)"
        );
        pub const STANDING: Text = t!("وضعیت خودروساز", "The manufacturer's standing");
        pub const RECORD: Text = t!("کارنامه پس از فروش", "After-sale record");
        pub const WARRANTY: Text = t!("گارانتی", "Warranty");
        pub const E_TEXT: Text = t!(
            "متن لازم است، حداکثر ۴۰۰۰ نویسه.",
            "The text is required, at most 4000 characters."
        );
        pub const E_MAKER_SUSPENDED: Text = t!(
            "خودروساز تعلیق است: پیش‌فروش‌هایش با رفع تعلیق خودروساز از سر گرفته می‌شوند.",
            "The manufacturer is suspended: its campaigns resume with it."
        );
        pub const E_COMPLAINT_CLOSED: Text =
            t!("این شکایت بسته شده است.", "The complaint is closed.");
        pub const E_COMPLAINT_ANSWERED: Text = t!(
            "این شکایت پیش‌تر پاسخ داده شده است.",
            "The complaint is answered already."
        );
        pub const E_COMPLAINT_NOT_YET: Text = t!(
            "این شکایت هنوز در مهلت پاسخ خودروساز است یا به وزارت نرسیده است.",
            "The complaint is still within the manufacturer's time to answer, or has not reached the ministry."
        );
        pub const E_NO_MAKER: Text = t!(
            "خودروسازی با این نام مجوز پیش‌فروش ندارد، یا شکایت از خودروساز دیگری است.",
            "No licensed manufacturer of that name, or the complaint is about another."
        );
        pub const E_VISIT_FORM: Text = t!(
            "مراجعه گارانتی: کد پیگیری خودروی تحویل‌شده، دستور کار کتبی، و زمانی نه پیش از تحویل یا پذیرش، نه در آینده و حداکثر سه روز پیش.",
            "A warranty visit: a delivered car's tracking code, a written work order, and a time not before the delivery or the visit's start, not in the future, at most three days ago."
        );
        pub const E_NO_CAR: Text = t!(
            "خودروی تحویل‌شده‌ای از این خودروساز با این کد پیگیری نیست (یا چنین مراجعه‌ای از آن نیست).",
            "No delivered car of this manufacturer has that tracking code (or no such visit of its)."
        );
        pub const E_VISIT_RETURNED: Text = t!(
            "این خودرو پیش‌تر تحویل داده شده است.",
            "The car is back already."
        );
        pub const E_KEY_REUSED: Text = t!(
            "این کلید درخواست برای مراجعه دیگری به کار رفته است.",
            "This request key was used for another visit."
        );
        pub const E_WORK_ORDER: Text = t!(
            "دستور کار کتبی لازم است، حداکثر ۴۰۰۰ نویسه.",
            "A written work order is required, at most 4000 characters."
        );
        pub const E_VISIT_TIME: Text = t!(
            "زمان مراجعه: نه پیش از تحویل یا پذیرش، نه در آینده؛ پذیرش حداکثر سه روز پیش و بازگشت حداکثر یک ساعت پیش.",
            "A visit's time: not before the delivery or the visit's start, not in the future; opened at most three days ago, returned at most an hour ago."
        );
        pub const E_DECIDE_SECOND: Text = t!(
            "تصمیم درباره شکایت دو نفره است: پیشنهاددهنده یا کسی که با او یک نفر است نمی‌تواند آن را تأیید کند.",
            "A decision on a complaint needs a second person: its proposer, or anyone behind the same person, cannot confirm it."
        );
        pub const PROPOSED_DECISION: Text = t!(
            "تصمیم پیشنهادی (در انتظار تأیید نفر دوم)",
            "Proposed decision (awaiting a second person)"
        );
        pub const AT_IDP_PENDING: Text = t!(
            "تصمیم هنوز در سامانه هویت اعمال نشده است؛ پیاپی دوباره فرستاده می‌شود.",
            "The decision is not yet carried out at the IdP; it is being sent again."
        );
        pub const AT_IDP_REFUSED: Text = t!(
            "سامانه هویت تصمیم را نپذیرفت:",
            "The IdP declined the decision:"
        );
        pub const E_FILE_GONE: Text = t!(
            "این پیوست خوانده نشد (از دست رفته یا دست‌کاری شده است).",
            "The attachment could not be read (lost or altered)."
        );
        pub const E_IN_WORKSHOP: Text = t!(
            "خودرو هم‌اکنون در تعمیرگاه است: نخست آن مراجعه را ببندید.",
            "The car is in the workshop already: close that visit first."
        );
    }

    pub const INTERNAL: Text = t!(
        "خطای داخلی رخ داد. لطفاً دوباره تلاش کنید.",
        "Something went wrong on our side. Please try again."
    );
    pub const RATE_LIMITED: Text = t!(
        "تعداد درخواست‌ها بیش از حد مجاز است. لطفاً بعداً دوباره تلاش کنید.",
        "Too many attempts. Please try again later."
    );
    pub const BUSY: Text = t!(
        "سامانه شلوغ است؛ چند ثانیه دیگر دوباره تلاش کنید.",
        "The service is busy; please try again in a few seconds."
    );
    pub const BAD_FORM: Text = t!(
        "فرم نامعتبر است؛ صفحه را دوباره باز کنید.",
        "The form is not valid; reload the page."
    );
    pub const NO_STOREFRONT: Text = t!("فروشگاه پیدا نشد.", "No such storefront.");
    pub const NO_PRESALE: Text = t!("این پیش‌فروش پیدا نشد.", "No such presale.");
    pub const NO_LOTTERY: Text = t!("این قرعه‌کشی پیدا نشد.", "No such lottery.");
    pub const NOT_FOUND: Text = t!("صفحه پیدا نشد.", "Page not found.");
    pub const NOT_FROM_EMTA: Text = t!(
        "پاسخ ورود از امتا نیست.",
        "The sign-in answer did not come from emta."
    );
    pub const SIGN_IN_REFUSED: Text = t!(
        "ورود انجام نشد یا اجازه داده نشد.",
        "Sign-in did not complete or was not allowed."
    );
    pub const SIGN_IN_INVALID: Text =
        t!("پاسخ ورود نامعتبر است.", "The sign-in answer is not valid.");
    pub const SIGN_IN_EXPIRED: Text = t!(
        "این ورود منقضی شده است؛ دوباره وارد شوید.",
        "This sign-in has expired; please sign in again."
    );
    pub const SIGN_IN_AGAIN: Text = t!("ورود دوباره با امتا", "Sign in again with emta");
    pub const SIGN_IN_OTHER_BROWSER: Text = t!(
        "این ورود در مرورگر دیگری آغاز شده است.",
        "This sign-in was started in another browser."
    );
    pub const IDP_REFUSED: Text = t!(
        "سامانه امتا ورود به این فروشگاه را اکنون نمی‌پذیرد. بعداً دوباره امتحان کنید.",
        "emta does not accept sign-ins to this storefront now. Try again later."
    );
    pub const IDP_DOWN: Text = t!(
        "امتا پاسخ نداد؛ دوباره تلاش کنید.",
        "emta did not answer; please try again."
    );
    pub const NO_NATIONAL_ID: Text =
        t!("شناسه ملی دریافت نشد.", "The national ID was not released.");
    pub const LOTTERY_NOT_OPEN: Text = t!(
        "ثبت‌نام این قرعه‌کشی باز نیست.",
        "Registration for this lottery is not open."
    );
    pub const QUEUE_CLOSED: Text = t!(
        "صف بسته است: ظرفیت تکمیل شده است.",
        "The queue is closed: sold out."
    );
    pub const QUEUE_SUSPENDED: Text = t!(
        "این پیش‌فروش از سوی وزارت موقتاً متوقف شده است؛ پس از ازسرگیری دوباره بپیوندید.",
        "The ministry has paused this presale; join again once it resumes."
    );
    pub const NOT_YOUR_TICKET: Text = t!(
        "این نوبت به شما تعلق ندارد؛ دوباره وارد صف شوید.",
        "This ticket is not yours; join the queue again."
    );
    pub const NOT_YET: Text = t!("هنوز نوبت شما نرسیده است.", "It is not your turn yet.");
    pub const TURN_OVER: Text = t!(
        "نوبت شما نرسیده یا مهلت آن گذشته است.",
        "It is not your turn, or your time to apply has run out."
    );
    pub const PROMISE_LINK: Text = t!(
        "تعهد امضاشده ثبت شما در گزارش شفافیت",
        "Your signed promise of inclusion in the transparency log"
    );
    pub const NO_PROMISE: Text = t!(
        "این مرورگر تعهدی برای این پیش‌فروش ندارد.",
        "This browser holds no promise for this presale."
    );
    pub const NOT_OUR_CHECKPOINT: Text = t!(
        "این نقطهٔ بررسی از دفتر این کارزار نیست.",
        "This checkpoint is not one of this campaign's log."
    );
    pub const UNKNOWN_WITNESS: Text = t!(
        "امضای هیچ گواه ثبت‌شده‌ای روی این نقطهٔ بررسی نیست.",
        "This checkpoint carries no registered witness's signature."
    );
    pub const COSIGNED: Text = t!(
        "امضای گواه نگه داشته شد.",
        "The witness's cosignature is kept."
    );
    pub const NO_LOG: Text = t!(
        "گزارش شفافیت این پیش‌فروش پیدا نشد.",
        "No transparency log for this presale."
    );
    pub const REVEAL_TOO_EARLY: Text = t!(
        "فهرست هنوز قطعی نشده است؛ راز را پس از قطعی شدن فهرست آشکار کنید.",
        "The list is not frozen yet; reveal the secret after it is frozen."
    );
    pub const REVEAL_UNKNOWN_PARTY: Text = t!(
        "این طرف در بذر این پیش‌فروش سهمی ندارد.",
        "This party has no share in this presale's seed."
    );
    pub const REVEAL_TOO_LATE: Text = t!(
        "مهلت آشکارسازی گذشته است؛ سهم این طرف «خودداری‌شده» ثبت می‌شود.",
        "The reveal window has closed; this party's share counts as withheld."
    );
    pub const REVEAL_ACCEPTED: Text = t!(
        "راز پذیرفته شد؛ بذر پس از آشکار شدن همه سهم‌ها یا پایان مهلت، با تأخیر محاسبه می‌شود.",
        "The secret is accepted; the seed is computed, with its delay, once every share is revealed or the window closes."
    );
    pub const REVEAL_ALREADY: Text = t!(
        "این راز پیش‌تر آشکار شده بود.",
        "This secret was revealed already."
    );
    pub const REVEAL_MISMATCH: Text = t!(
        "این راز با تعهد منتشرشده این طرف نمی‌خواند.",
        "This secret does not match the party's published commitment."
    );
    pub const BAD_RECEIPT: Text = t!(
        "رسید خوانا نیست: متن JSON رسید را کامل بچسبانید.",
        "The receipt cannot be read: paste the receipt's whole JSON."
    );
    pub const BAD_RANGE: Text = t!(
        "بازه درخواستی نامعتبر است.",
        "The requested range is not valid."
    );
    pub const NO_HOLD: Text = t!(
        "این پیش‌فروش مسدودی پیش‌پرداخت نمی‌خواهد.",
        "This presale takes no down payment hold."
    );
    pub const NOT_A_PARTICIPATING_BANK: Text = t!(
        "یکی از بانک‌های عامل همین پیش‌فروش را برگزینید.",
        "Choose one of this presale's participating banks."
    );
    pub const HOLD_CHANGED: Text = t!(
        "مسدودی شما در این میان تغییر کرد؛ صفحه مسدودی را دوباره باز کنید.",
        "Your hold changed meanwhile; open the hold's page again."
    );
    pub const BAD_BANK_RETURN: Text = t!(
        "پاسخ بانک معتبر نیست (امضا، شناسه یا مبلغ با سابقه امتا نمی‌خواند). مسدودی ثبت نشد.",
        "The bank's answer is not valid (its signature, reference or amount does not match emta's record). No hold was recorded."
    );
    pub const MANDATE_OPEN: Text = t!(
        "درخواست مسدودی پیشین شما در بانک هنوز باز است: نخست در صفحه بانک آن را تأیید یا لغو کنید.",
        "Your earlier hold request is still open at the bank: approve or decline it on the bank's page first."
    );
    pub const HOLD_MISMATCH: Text = t!(
        "سابقه بانک از این مسدودی (کد ملی، مبلغ، عنوان یا دوره) با سابقه امتا یکی نیست؛ مسدودی پذیرفته نشد.",
        "The bank's record of this mandate (national ID, amount, title or round) is not emta's; the hold does not count."
    );
    /// A registry or bank that a rule needs and that could not answer, by name.
    pub fn upstream(service: &str) -> Text {
        match service {
            crate::adapters::registries::TRAFFIC_POLICE => t!(
                "سامانه پلیس راهور اکنون پاسخ نمی‌دهد؛ درخواست شما رد نشده است. کمی بعد دوباره امتحان کنید.",
                "The traffic police registry cannot answer now; you have not been refused. Try again shortly."
            ),
            crate::adapters::registries::VEHICLE_REGISTRY => t!(
                "سامانه شماره‌گذاری خودرو اکنون پاسخ نمی‌دهد؛ درخواست شما رد نشده است. کمی بعد دوباره امتحان کنید.",
                "The vehicle registry cannot answer now; you have not been refused. Try again shortly."
            ),
            crate::adapters::bank::SERVICE => t!(
                "بانک اکنون پاسخ نمی‌دهد؛ چیزی ثبت یا برداشت نشده است. کمی بعد دوباره امتحان کنید.",
                "The bank cannot answer now; nothing was recorded or taken. Try again shortly."
            ),
            _ => t!(
                "سامانه بیرونی لازم اکنون پاسخ نمی‌دهد؛ درخواست شما رد نشده است. کمی بعد دوباره امتحان کنید.",
                "A service this step needs cannot answer now; you have not been refused. Try again shortly."
            ),
        }
    }
    pub const NOT_A_WINNER: Text = t!(
        "شما در قرعه‌کشی برنده نشده‌اید یا قرعه‌کشی هنوز انجام نشده است.",
        "You did not win the lottery, or it has not been drawn yet."
    );
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Something the user can act on; nothing internal in it.
    #[error("{status}: {}", text.en)]
    User { status: StatusCode, text: Text },
    /// A limit was hit: 429 with Retry-After.
    #[error("rate limited for {retry_after}s")]
    RateLimited { retry_after: u64 },
    /// Shed load, or a store that cannot serve right now: 503 with Retry-After, nothing
    /// done.
    #[error("busy, retry in {retry_after}s")]
    Busy { retry_after: u64 },
    /// A registry (or a bank) that a rule needs could not answer: 503 with Retry-After,
    /// nothing refused and nothing done.
    #[error("{service} cannot answer, retry in {retry_after}s")]
    Upstream {
        service: &'static str,
        retry_after: u64,
    },
    /// Something the user can act on, with the figures that decided it (numbers and
    /// names, the same in both languages).
    #[error("{status}: {} ({figures})", text.en)]
    Figures {
        status: StatusCode,
        text: Text,
        figures: String,
    },
    /// A form whose CSRF token does not belong to this browser's session: 403.
    #[error("bad form")]
    BadForm,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("internal: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn user(status: StatusCode, text: Text) -> Self {
        Self::User { status, text }
    }

    pub fn not_found(text: Text) -> Self {
        Self::user(StatusCode::NOT_FOUND, text)
    }

    pub fn conflict(text: Text) -> Self {
        Self::user(StatusCode::CONFLICT, text)
    }

    pub fn bad_request(text: Text) -> Self {
        Self::user(StatusCode::BAD_REQUEST, text)
    }

    /// Status, message and Retry-After as shown to the user; logs internal causes.
    fn public(&self) -> (StatusCode, Text, Option<u64>) {
        match self {
            Self::User { status, text } | Self::Figures { status, text, .. } => {
                (*status, *text, None)
            }
            Self::RateLimited { retry_after } => (
                StatusCode::TOO_MANY_REQUESTS,
                msg::RATE_LIMITED,
                Some(*retry_after),
            ),
            Self::Busy { retry_after } => (
                StatusCode::SERVICE_UNAVAILABLE,
                msg::BUSY,
                Some(*retry_after),
            ),
            Self::Upstream {
                service,
                retry_after,
            } => (
                StatusCode::SERVICE_UNAVAILABLE,
                msg::upstream(service),
                Some(*retry_after),
            ),
            Self::BadForm => (StatusCode::FORBIDDEN, msg::BAD_FORM, None),
            // A store or queue that cannot answer: ride it out with nothing half-done.
            Self::Store(e) => {
                tracing::error!(error = %e, "presale store");
                (StatusCode::SERVICE_UNAVAILABLE, msg::BUSY, Some(5))
            }
            Self::Queue(e) => {
                tracing::warn!(error = %e, "presale queue");
                (StatusCode::SERVICE_UNAVAILABLE, msg::BUSY, Some(10))
            }
            Self::Internal(e) => {
                tracing::error!(error = %e, "presale internal error");
                (StatusCode::INTERNAL_SERVER_ERROR, msg::INTERNAL, None)
            }
        }
    }
}

impl From<Refusal> for Error {
    fn from(r: Refusal) -> Self {
        Self::conflict(r.text())
    }
}

impl From<service_kit::limit::LimitError> for Error {
    fn from(e: service_kit::limit::LimitError) -> Self {
        match e {
            service_kit::limit::LimitError::Limited { retry_after } => {
                Self::RateLimited { retry_after }
            }
            service_kit::limit::LimitError::Store(e) => {
                tracing::warn!(error = %e, "presale limits");
                Self::Busy { retry_after: 5 }
            }
        }
    }
}

impl From<service_kit::ephemeral::EphemeralError> for Error {
    fn from(e: service_kit::ephemeral::EphemeralError) -> Self {
        tracing::warn!(error = %e, "presale sessions");
        Self::Busy { retry_after: 5 }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, text, retry_after) = self.public();
        let mut r = match &self {
            Self::Figures { figures, .. } => {
                crate::http::pages::problem_with(status, text, figures)
            }
            _ => crate::http::pages::problem(status, text),
        };
        if let Some(secs) = retry_after {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        r
    }
}

/// The title of an error page.
pub const ERROR_TITLE: Text = t!("خطا", "Error");
