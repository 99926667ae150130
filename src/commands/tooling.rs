//! Commands around the tool rather than the fleet: `fmt [--check]`, `completions <shell>`, `man`.

use std::io::Write;

use anyhow::{Context, Result};
use clap::CommandFactory;

use super::Exit;
use crate::cli::{Cli, FmtArgs};
use crate::config::format::format_str;

/// `fmt`: rewrites the config file in its canonical layout (atomically), or with `--check` prints
/// the diff and exits 1 when it is not formatted.
pub(super) fn fmt(cli: &Cli, args: &FmtArgs) -> Result<Exit> {
    let path = &cli.config;
    let meta = std::fs::metadata(path).with_context(|| format!("reading the config file {}", path.display()))?;
    if meta.len() as usize > crate::config::parse::MAX_CONFIG_BYTES {
        anyhow::bail!(
            "the config file {} is {} bytes; cozyform reads at most {}",
            path.display(),
            meta.len(),
            crate::config::parse::MAX_CONFIG_BYTES
        );
    }
    let bytes = std::fs::read(path).with_context(|| format!("reading the config file {}", path.display()))?;
    let src = String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!(
            "{} is not UTF-8 (byte {})",
            path.display(),
            e.utf8_error().valid_up_to()
        )
    })?;
    let formatted = match format_str(&src, path) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{e}");
            return Ok(1);
        }
    };
    if formatted == src {
        if !cli.quiet && !args.check {
            eprintln!("{} is already formatted.", path.display());
        }
        return Ok(0);
    }
    if args.check {
        let shown = path.display().to_string();
        let diff = similar::TextDiff::from_lines(&src, &formatted);
        print!(
            "{}",
            diff.unified_diff()
                .context_radius(3)
                .header(&shown, &format!("{shown} (formatted)"))
        );
        std::io::stdout().flush()?;
        if !cli.quiet {
            eprintln!("{shown} is not formatted; run: cozyform fmt");
        }
        return Ok(1);
    }
    crate::atomic_file::write(path, formatted.as_bytes())?;
    if !cli.quiet {
        eprintln!("Formatted {}.", path.display());
    }
    Ok(0)
}

/// `completions <shell>`: the completion script on stdout.
pub(super) fn completions(shell: clap_complete::Shell) -> Result<Exit> {
    let mut cmd = Cli::command();
    let mut out = std::io::stdout().lock();
    clap_complete::generate(shell, &mut cmd, "cozyform", &mut out);
    out.flush()?;
    Ok(0)
}

/// `man [COMMAND]`: the man page cozyform(1), or cozyform-COMMAND(1), in roff, on stdout.
pub(super) fn man(command: Option<&str>) -> Result<Exit> {
    let root = Cli::command();
    let page = match command {
        None => root,
        Some(name) => {
            let Some(sub) = root.find_subcommand(name) else {
                let names: Vec<&str> = root.get_subcommands().map(|c| c.get_name()).collect();
                return Err(super::user_error(
                    format!("no command named {name:?}"),
                    format!("one of: {}", names.join(", ")),
                ));
            };
            // clap names are `&'static str` (no `string` feature); this process prints one page and ends.
            let full: &'static str = Box::leak(format!("cozyform-{}", sub.get_name()).into_boxed_str());
            let bin: &'static str = Box::leak(format!("cozyform {}", sub.get_name()).into_boxed_str());
            // Global options are defined on the root command: carry them over to the page.
            let mut sub = sub.clone().name(full).bin_name(bin);
            for arg in root.get_arguments().filter(|a| a.is_global_set()) {
                sub = sub.arg(arg.clone());
            }
            sub.version(env!("CARGO_PKG_VERSION"))
        }
    };
    let mut buf = Vec::new();
    clap_mangen::Man::new(page).render(&mut buf)?;
    let mut out = std::io::stdout().lock();
    out.write_all(&buf)?;
    out.flush()?;
    Ok(0)
}
