//! The key table: every configuration key Tern knows, its legacy alias, its type, its default
//! and whether it may change at run time (user metadata or commands). Pantavisor keys come
//! first, in the order Pantavisor lists them (the order of `GET /config2`), then Tern's own
//! `TERN_*` keys. Aliases, types, defaults and run-time flags follow Pantavisor's `config.c` of
//! the release the golden outputs come from; where its default is a path relative to an install
//! prefix (`/pv`), the documented absolute path is used instead.

use super::keys::{KeyDef, Kind};

/// Largest value of a Pantavisor integer key (a C `int`).
const INT_MAX: u64 = 2_147_483_647;

/// Bootloader types, indexed by the number Pantavisor prints in `GET /config`.
const BOOTLOADERS: &[&str] = &["uboot", "uboot-pvk", "grub", "rpiab", "uboot-ab"];
/// Secure boot modes, indexed by Pantavisor's number.
const SECUREBOOT_MODES: &[&str] = &["disabled", "audit", "lenient", "strict"];
/// System init modes, indexed by Pantavisor's number.
const INIT_MODES: &[&str] = &["embedded", "standalone", "appengine"];
const CONTAINER_MODES: &[&str] = &["auto", "isolated", "process"];
const DEV_REBOOTS: &[&str] = &["exit", "reexec"];
const ON_OFF: &[&str] = &["on", "off"];
/// Watchdog modes, indexed by Pantavisor's number.
const WDT_MODES: &[&str] = &["disabled", "shutdown", "startup", "always"];

type Alias = Option<&'static str>;

const fn key(
    name: &'static str,
    alias: Alias,
    kind: Kind,
    default: Option<&'static str>,
) -> KeyDef {
    KeyDef {
        name,
        alias,
        kind,
        default,
        runtime: false,
    }
}

const fn string(name: &'static str, alias: Alias, default: Option<&'static str>) -> KeyDef {
    key(name, alias, Kind::Str, default)
}

const fn int(
    name: &'static str,
    alias: Alias,
    default: &'static str,
    min: u64,
    max: u64,
) -> KeyDef {
    key(name, alias, Kind::Int { min, max }, Some(default))
}

const fn boolean(name: &'static str, alias: Alias, default: bool) -> KeyDef {
    key(
        name,
        alias,
        Kind::Bool,
        Some(if default { "1" } else { "0" }),
    )
}

const fn one_of(
    name: &'static str,
    alias: Alias,
    values: &'static [&'static str],
    default: &'static str,
) -> KeyDef {
    key(name, alias, Kind::Enum(values), Some(default))
}

/// The default is stored as the bitmask: `filetree` plus the update bit.
const fn outputs(name: &'static str, alias: Alias, default: &'static str) -> KeyDef {
    key(name, alias, Kind::Outputs, Some(default))
}

impl KeyDef {
    /// Marks a key Pantavisor lets user metadata and commands change.
    const fn runtime(mut self) -> Self {
        self.runtime = true;
        self
    }
}

/// Every key, in `GET /config2` order (one line a key, hence no rustfmt).
#[rustfmt::skip]
pub(crate) const KEYS: &[KeyDef] = &[
    string("PH_CREDS_HOST", Some("creds.host"), Some("api.pantahub.com")),
    string("PH_CREDS_ID", Some("creds.id"), None),
    int("PH_CREDS_PORT", Some("creds.port"), "443", 0, 65535),
    string("PH_CREDS_PROXY_HOST", Some("creds.proxy.host"), None),
    int("PH_CREDS_PROXY_NOPROXYCONNECT", Some("creds.proxy.noproxyconnect"), "0", 0, 1),
    int("PH_CREDS_PROXY_PORT", Some("creds.proxy.port"), "3218", 0, 65535),
    string("PH_CREDS_PRN", Some("creds.prn"), None),
    string("PH_CREDS_SECRET", Some("creds.secret"), None),
    string("PH_CREDS_TYPE", Some("creds.type"), Some("builtin")),
    string("PH_FACTORY_AUTOTOK", Some("factory.autotok"), None),
    int("PH_LIBEVENT_HTTP_TIMEOUT", None, "60", 0, INT_MAX).runtime(),
    int("PH_LIBEVENT_HTTP_RETRIES", None, "1", 0, INT_MAX).runtime(),
    int("PH_METADATA_DEVMETA_INTERVAL", Some("metadata.devmeta.interval"), "10", 0, INT_MAX).runtime(),
    int("PH_METADATA_USRMETA_INTERVAL", Some("metadata.usrmeta.interval"), "5", 0, INT_MAX).runtime(),
    int("PH_ONLINE_REQUEST_THRESHOLD", None, "0", 0, INT_MAX).runtime(),
    int("PH_UPDATER_INTERVAL", Some("updater.interval"), "60", 0, INT_MAX).runtime(),
    int("PH_UPDATER_NETWORK_TIMEOUT", Some("updater.network_timeout"), "120", 0, INT_MAX).runtime(),
    int("PH_UPDATER_TRANSFER_MAX_COUNT", None, "5", 0, INT_MAX).runtime(),
    string("PV_BOOTLOADER_FITCONFIG", Some("bootloader.fitconfig"), None),
    string("PV_BOOTLOADER_MTD_ENV", Some("bootloader.mtd_env"), None),
    boolean("PV_BOOTLOADER_MTD_ONLY", Some("bootloader.mtd_only"), false),
    one_of("PV_BOOTLOADER_TYPE", Some("bootloader.type"), BOOTLOADERS, "uboot"),
    string("PV_BOOTLOADER_UBOOTAB_A_NAME", None, Some("fitA")),
    string("PV_BOOTLOADER_UBOOTAB_B_NAME", None, Some("fitB")),
    string("PV_BOOTLOADER_UBOOTAB_ENV_NAME", None, None),
    string("PV_BOOTLOADER_UBOOTAB_ENV_BAK_NAME", None, None),
    int("PV_BOOTLOADER_UBOOTAB_ENV_OFFSET", None, "0", 0, INT_MAX),
    int("PV_BOOTLOADER_UBOOTAB_ENV_SIZE", None, "0", 0, INT_MAX),
    string("PV_CACHE_DEVMETADIR", Some("cache.devmetadir"), Some("/storage/cache/devmeta")),
    string("PV_CACHE_USRMETADIR", Some("cache.usrmetadir"), Some("/storage/cache/meta")),
    boolean("PV_CONTROL_REMOTE", Some("control.remote"), true),
    boolean("PV_CONTROL_REMOTE_ALWAYS", Some("control.remote.always"), false),
    boolean("PV_DEBUG_SHELL", Some("debug.shell"), true),
    boolean("PV_DEBUG_SHELL_AUTOLOGIN", Some("debug.shell.autologin"), false),
    int("PV_DEBUG_SHELL_TIMEOUT", None, "60", 0, INT_MAX),
    boolean("PV_DEBUG_SSH", Some("debug.ssh"), true).runtime(),
    string("PV_DEBUG_SSH_AUTHORIZED_KEYS", Some("debug.ssh_authorized_keys"), None).runtime(),
    string("PV_DISK_EXPORTSDIR", Some("disk.exportsdir"), Some("/exports")),
    string("PV_DISK_VOLDIR", Some("disk.voldir"), Some("/volumes")),
    string("PV_DISK_WRITABLEDIR", Some("disk.writabledir"), Some("/writable")),
    string("PV_DROPBEAR_CACHE_DIR", Some("dropbear.cache.dir"), Some("/storage/cache/dropbear")),
    boolean("PV_LIBEVENT_DEBUG_MODE", None, false),
    string("PV_LIBTHTTP_CERTSDIR", Some("libthttp.certdir"), Some("/certs")),
    int("PV_LIBTHTTP_LOG_LEVEL", Some("libthttp.log.level"), "3", 0, 5).runtime(),
    boolean("PV_LOG_AUTO_DEVLOG", None, true),
    boolean("PV_LOG_CAPTURE", Some("log.capture"), true),
    boolean("PV_LOG_CAPTURE_DMESG", Some("log.capture.dmesg"), true),
    int("PV_LOG_BUF_NITEMS", Some("log.buf_nitems"), "128", 0, INT_MAX),
    string("PV_LOG_DIR", Some("log.dir"), Some("/storage/logs/")),
    string("PV_LOG_DIR_MAXSIZE", None, Some("0")).runtime(),
    string("PV_LOG_FILETREE_TIMESTAMP_FORMAT", Some("log.filetree.timestamp.format"), None).runtime(),
    int("PV_LOG_HYSTERESIS_FACTOR", None, "4", 0, INT_MAX).runtime(),
    int("PV_LOG_LEVEL", Some("log.level"), "0", 0, 5).runtime(),
    boolean("PV_LOG_LOGGERS", Some("log.loggers"), true),
    boolean("PV_LOG_PUSH", Some("log.push"), true).runtime(),
    int("PV_LOG_ROTATE_FACTOR", None, "5", 0, INT_MAX).runtime(),
    outputs("PV_LOG_SERVER_OUTPUTS", Some("log.server.outputs"), "132").runtime(),
    string("PV_LOG_SINGLEFILE_TIMESTAMP_FORMAT", Some("log.singlefile.timestamp.format"), None).runtime(),
    string("PV_LOG_STDOUT_TIMESTAMP_FORMAT", Some("log.stdout.timestamp.format"), None).runtime(),
    int("PV_LXC_LOG_LEVEL", Some("lxc.log.level"), "2", 0, 8),
    string("PV_NET_BRADDRESS4", Some("net.braddress4"), Some("10.0.3.1")),
    string("PV_NET_BRDEV", Some("net.brdev"), Some("lxcbr0")),
    string("PV_NET_BRMASK4", Some("net.brmask4"), Some("255.255.255.0")),
    string("PV_OEM_NAME", None, None),
    string("PV_POLICY", Some("policy"), None),
    int("PV_REVISION_RETRIES", Some("revision.retries"), "10", 0, INT_MAX).runtime(),
    boolean("PV_SECUREBOOT_CHECKSUM", Some("secureboot.checksum"), true),
    boolean("PV_SECUREBOOT_HANDLERS", Some("secureboot.handlers"), true),
    // Pantavisor's lenient, or disabled in a build without the verifier (feature `sig`).
    one_of("PV_SECUREBOOT_MODE", Some("secureboot.mode"), SECUREBOOT_MODES, crate::sig::DEFAULT_MODE.as_str()),
    // Pantavisor's only alias for this key is an old misspelling, and GET /config prints it.
    string("PV_SECUREBOOT_OEM_TRUSTSTORE", Some("PV_SECUREBOOT_OEM_TRUSTORE"), Some("ca-oem-certificates")),
    string("PV_SECUREBOOT_TRUSTSTORE", Some("secureboot.truststore"), Some("ca-certificates")),
    string("PV_STORAGE_DEVICE", Some("storage.device"), None),
    string("PV_STORAGE_FSTYPE", Some("storage.fstype"), None),
    boolean("PV_STORAGE_GC_KEEP_FACTORY", Some("storage.gc.keep_factory"), false).runtime(),
    int("PV_STORAGE_GC_RESERVED", Some("storage.gc.reserved"), "5", 0, 100).runtime(),
    int("PV_STORAGE_GC_THRESHOLD_DEFERTIME", Some("storage.gc.threshold.defertime"), "600", 0, INT_MAX).runtime(),
    int("PV_STORAGE_GC_THRESHOLD", Some("storage.gc.threshold"), "0", 0, 100).runtime(),
    string("PV_STORAGE_LOGTEMPSIZE", Some("storage.logtempsize"), None),
    string("PV_STORAGE_MNTPOINT", Some("storage.mntpoint"), None),
    string("PV_STORAGE_MNTTYPE", Some("storage.mnttype"), None),
    boolean("PV_STORAGE_FIRMWARE_VOL", None, false),
    boolean("PV_STORAGE_PHCONFIG_VOL", None, false),
    int("PV_STORAGE_WAIT", Some("storage.wait"), "5", 0, INT_MAX),
    string("PV_SYSTEM_APPARMOR_PROFILES", Some("system.apparmor.profiles"), None),
    string("PV_SYSTEM_CONFDIR", Some("system.confdir"), Some("/configs")),
    boolean("PV_SYSTEM_DRIVERS_LOAD_EARLY_AUTO", Some("system.drivers.load_early.auto"), false),
    string("PV_SYSTEM_ETCDIR", Some("system.etcdir"), Some("/etc")),
    string("PV_SYSTEM_ETCPANTAVISORDIR", None, Some("/etc/pantavisor")),
    one_of("PV_SYSTEM_INIT_MODE", Some("system.init.mode"), INIT_MODES, "embedded"),
    string("PV_SYSTEM_LIBDIR", Some("system.libdir"), Some("/lib")),
    string("PV_SYSTEM_MEDIADIR", Some("system.mediadir"), Some("/media")),
    boolean("PV_SYSTEM_MOUNT_SECURITYFS", Some("system.mount.securityfs"), false),
    string("PV_SYSTEM_RUNDIR", Some("system.rundir"), Some("/run/pantavisor/pv")),
    string("PV_SYSTEM_DISKSDIR", Some("system.disksdir"), Some("/run/pantavisor/disks")),
    string("PV_SYSTEM_USRDIR", Some("system.usrdir"), Some("/usr")),
    int("PV_UPDATER_COMMIT_DELAY", Some("updater.commit.delay"), "25", 0, INT_MAX).runtime(),
    int("PV_UPDATER_GOALS_TIMEOUT", Some("updater.goals.timeout"), "120", 0, INT_MAX),
    boolean("PV_UPDATER_USE_TMP_OBJECTS", Some("updater.use_tmp_objects"), false).runtime(),
    string("PV_VOLMOUNT_DM_EXTRA_ARGS", None, None),
    one_of("PV_WDT_MODE", Some("wdt.mode"), WDT_MODES, "shutdown"),
    int("PV_WDT_TIMEOUT", Some("wdt.timeout"), "15", 0, INT_MAX),
    // Tern's own keys.
    int("TERN_CTRL_MAX_CONNECTIONS", None, "64", 1, 1024),
    int("TERN_CTRL_IDLE_TIMEOUT", None, "60", 1, 86_400),
    int("TERN_CTRL_REQUEST_TIMEOUT", None, "30", 1, 3_600),
    int("TERN_CTRL_HEAD_TIMEOUT", None, "5", 1, 3_600),
    int("TERN_CTRL_BODY_MIN_RATE", None, "512", 0, INT_MAX),
    int("TERN_CTRL_RESERVED_CONNECTIONS", None, "8", 0, 512),
    int("TERN_CTRL_MAX_PER_CALLER", None, "16", 1, 1024),
    int("TERN_CTRL_MAX_HEADS_PER_CALLER", None, "4", 1, 1024),
    int("TERN_V1_MAX_CONNECTIONS", None, "32", 1, 1024),
    int("TERN_V1_RESERVED_CONNECTIONS", None, "8", 0, 512),
    int("TERN_V1_MAX_PER_CALLER", None, "8", 1, 1024),
    int("TERN_V1_MAX_HEADS_PER_CALLER", None, "8", 1, 1024),
    string("TERN_BOARD", None, None),
    string("TERN_REBOOT_CMD", None, None),
    string("TERN_POWEROFF_CMD", None, None),
    string("TERN_MODULE_LOADER", None, Some("modprobe")),
    string("TERN_LED_PATH", None, None),
    string("TERN_SSHD_CMD", None, None),
    int("TERN_LOG_MAXSIZE", None, "1048576", 4_096, INT_MAX),
    one_of("TERN_CONTAINER_MODE", None, CONTAINER_MODES, "auto"),
    int("TERN_STOP_GRACE", None, "5", 0, 3_600),
    int("TERN_CONSOLE_MAXSIZE", None, "2097152", 4_096, INT_MAX),
    one_of("TERN_DEV_REBOOT", None, DEV_REBOOTS, "exit"),
    int("TERN_GC_GRACE", None, "600", 0, INT_MAX),
    string("TERN_DAEMONS", None, None),
    string("TERN_V1_ADDRESS", None, Some("127.0.0.1:48484")),
    string("TERN_TEST_UNHEALTHY", None, None),
    one_of("TERN_HUB", None, ON_OFF, "on"),
    string("TERN_HUB_CA", None, None),
    boolean("TERN_HUB_INSECURE", None, false),
    string("TERN_HUB_HOSTS", None, Some("/etc/hosts")),
    string("TERN_HUB_RESOLV_CONF", None, Some("/etc/resolv.conf")),
    int("TERN_HUB_JITTER", None, "10", 0, 50),
    int("TERN_HUB_REQUEST_TIMEOUT", None, "30", 1, 3_600),
];

/// Further names Pantavisor accepts on input only (never printed).
pub(crate) const EXTRA_ALIASES: &[(&str, &str)] = &[
    ("meta.cache.dir", "PV_CACHE_USRMETADIR"),
    ("pantahub.log.push", "PV_LOG_PUSH"),
    ("updater.keep_factory", "PV_STORAGE_GC_KEEP_FACTORY"),
];
