//! The `huddle` command: `serve` (default), `token`, `migrate`.

use std::net::TcpListener;
use std::process::ExitCode;

use clap::Parser;
use huddle::auth::{self, JwtAlgorithm, JwtConfig};
use huddle::config::{Cli, Command, Options};
use huddle::db::connection::Target;
use huddle::secret;

/// mimalloc instead of glibc's malloc: frames and requests are allocated on
/// one thread (rooms, database threads) and freed on another (connections),
/// which glibc's arenas handle poorly (see BENCHMARKS.md). Built without
/// transparent huge pages, which inflated the memory of idle connections.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(&cli.options),
        Command::Token(args) => jwt_config(&cli.options, false).and_then(|jwt| {
            let ttl = i64::try_from(args.ttl.as_secs()).map_err(|_| "ttl too long".to_string())?;
            let token = auth::mint(&jwt, &args.sub, args.name.as_deref(), ttl)?;
            println!("{token}");
            Ok(())
        }),
        Command::Migrate => {
            let target = Target::parse(&cli.options.database_url);
            huddle::db::open(&target, cli.options.sqlite_synchronous, 1).map(|_| {
                log::info!("migrations applied to {target}");
            })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            eprintln!("huddle: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The token settings; with HS256 and no secret, the generated one.
fn jwt_config(options: &Options, announce: bool) -> Result<JwtConfig, String> {
    let mut secret = options.jwt_secret.clone();
    if options.jwt_algorithm == JwtAlgorithm::Hs256 && secret.is_none() {
        let path = secret::path_for(&Target::parse(&options.database_url));
        let (s, created) = secret::load_or_create(&path)?;
        if announce {
            if created {
                log::info!("generated a JWT secret in {} (mode 0600)", path.display());
            } else {
                log::info!("using the JWT secret in {}", path.display());
            }
            log::info!("mint a token with: huddle token --sub alice --name Alice (same directory and DATABASE_URL)");
        }
        secret = Some(s);
    }
    let public_key_pem = options.jwt_public_key.as_deref().map(auth::read_public_key).transpose()?;
    Ok(JwtConfig {
        algorithm: options.jwt_algorithm,
        secret,
        public_key_pem,
        issuer: options.jwt_issuer.clone(),
        audience: options.jwt_audience.clone(),
        leeway_s: options.jwt_leeway_s,
    })
}

fn serve(options: &Options) -> Result<(), String> {
    let jwt = jwt_config(options, true)?;
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
