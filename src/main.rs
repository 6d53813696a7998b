//! The `huddle` command: `serve` (default), `token`, `migrate`.

use std::net::TcpListener;
use std::path::Path;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use huddle::auth::{self, JwtAlgorithm, JwtConfig};
use huddle::config::{Cli, Command, JwtOptions, MigrateArgs, Options, TokenArgs, DEFAULT_DATABASE_URL};
use huddle::db::connection::Target;
use huddle::secret;

/// mimalloc instead of glibc's malloc: frames and requests are allocated on
/// one thread (rooms, database threads) and freed on another (connections),
/// which glibc's arenas handle poorly (see BENCHMARKS.md). Built without
/// transparent huge pages, which inflated the memory of idle connections.
/// The `system-alloc` feature leaves it out, for heap profilers (valgrind's
/// massif) that see only the system allocator's calls.
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    let result = match cli.command {
        None => serve(&cli.options),
        Some(Command::Serve(options)) => serve(&options),
        Some(Command::Token(args)) => token(&args),
        Some(Command::Migrate(args)) => migrate(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Once, on stderr: the log goes there too.
            eprintln!("huddle: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(options: &Options) -> Result<(), String> {
    // A cluster on SQLite is refused before anything is created.
    options.cluster()?;
    let secret = match (&options.jwt.jwt_secret, options.jwt.jwt_algorithm) {
        (None, JwtAlgorithm::Hs256) => {
            let path = secret::path_for(&Target::parse(&options.database_url));
            let (secret, created) = secret::load_or_create(&path)?;
            let verb = if created { "generated a JWT secret in" } else { "using the JWT secret in" };
            log::info!("{verb} {} (mode 0600)", path.display());
            log::info!("mint a token with: {}", token_hint(&options.database_url));
            Some(secret)
        }
        (given, _) => given.clone(),
    };
    let jwt = JwtConfig {
        public_key_pem: options.jwt_public_key.as_deref().map(auth::read_public_key).transpose()?,
        leeway_s: options.jwt_leeway_s,
        ..jwt_config(&options.jwt, secret)
    };
    if options.demo {
        log::warn!("--demo: anyone who can reach this server can get a token; never use it in production");
    }
    let listener = TcpListener::bind(options.bind).map_err(|e| format!("cannot bind {}: {e}", options.bind))?;
    let system = actix_web::rt::System::new();
    system.block_on(async move {
        let running = huddle::start(listener, options, jwt)?;
        running.serve_until_signal().await.map_err(|e| e.to_string())
    })
}

/// Prints a token signed as the server would sign it. Never creates a
/// secret: one made here would not be the server's, and the token would
/// be refused.
fn token(args: &TokenArgs) -> Result<(), String> {
    if args.jwt.jwt_algorithm != JwtAlgorithm::Hs256 {
        let name = args.jwt.jwt_algorithm.to_possible_value().map(|v| v.get_name().to_owned()).unwrap_or_default();
        return Err(format!(
            "token mints HS256 tokens only, and the algorithm is {name} (--jwt-algorithm, HUDDLE_JWT_ALGORITHM): \
             {name} tokens are signed with a private key the server does not hold; sign them where that key is"
        ));
    }
    let secret = match &args.jwt.jwt_secret {
        Some(s) => s.clone(),
        None => {
            let path = secret::path_for(&Target::parse(&args.database_url));
            secret::load(&path)?.ok_or_else(|| no_secret(&path))?
        }
    };
    let jwt = jwt_config(&args.jwt, Some(secret));
    let ttl = i64::try_from(args.ttl.as_secs()).map_err(|_| "ttl too long".to_string())?;
    println!("{}", auth::mint(&jwt, &args.sub, args.name.as_deref(), ttl)?);
    Ok(())
}

fn migrate(args: &MigrateArgs) -> Result<(), String> {
    let target = Target::parse(&args.database_url);
    huddle::db::open(&target, args.sqlite_synchronous, 1)?;
    log::info!("migrations applied to {target}");
    Ok(())
}

/// The token settings, with `secret` for HS256.
fn jwt_config(jwt: &JwtOptions, secret: Option<String>) -> JwtConfig {
    JwtConfig {
        algorithm: jwt.jwt_algorithm,
        secret,
        public_key_pem: None,
        issuer: jwt.jwt_issuer.clone(),
        audience: jwt.jwt_audience.clone(),
        leeway_s: 0,
    }
}

/// What `huddle token` says when the server's secret is not where it looked.
fn no_secret(path: &Path) -> String {
    let shown = std::env::current_dir().map(|dir| dir.join(path)).unwrap_or_else(|_| path.to_owned());
    format!(
        "no JWT secret at {}. `huddle token` signs with the secret the server generated \
         beside its database and never creates one (a new one would not be the server's). \
         Run it in the server's directory, or point it at the server's database with \
         --database-url PATH (or DATABASE_URL), or give the secret with --jwt-secret \
         (or HUDDLE_JWT_SECRET)",
        shown.display()
    )
}

/// The command that mints a token for this server, as the person who
/// started it can type it: through cargo when cargo started it, else the
/// way this binary was called.
fn token_hint(database_url: &str) -> String {
    let program = if std::env::var_os("CARGO").is_some() {
        let release = if cfg!(debug_assertions) { "" } else { " --release" };
        format!("cargo run{release} --")
    } else {
        std::env::args().next().filter(|arg0| arg0.contains('/')).unwrap_or_else(|| "huddle".to_owned())
    };
    let database = match Target::parse(database_url) {
        _ if database_url == DEFAULT_DATABASE_URL => String::new(),
        // A PostgreSQL URL may hold a password: never print it.
        Target::Postgres(_) => " (with the same DATABASE_URL)".to_owned(),
        Target::Sqlite(_) => format!(" --database-url {database_url}"),
    };
    format!("{program} token --sub alice --name Alice{database}")
}
