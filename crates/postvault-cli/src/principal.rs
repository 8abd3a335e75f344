//! `postvault principal revoke|rotate`: the operator ends a principal's
//! token (docs/security.md).

use anyhow::Result;

use crate::{Cli, print_json};

pub fn revoke(cli: &Cli, name: &str) -> Result<u8> {
    let v = crate::open_vault(cli)?;
    let r = v.revoke_principal(None, name)?;
    errln!("postvault: `{name}` is revoked; running nodes refuse its token within a second");
    print_json(&r)?;
    Ok(0)
}

pub fn rotate(cli: &Cli, name: &str) -> Result<u8> {
    let v = crate::open_vault(cli)?;
    let r = v.rotate_principal(None, name)?;
    errln!(
        "postvault: the new token is shown once; store it now (running nodes refuse the old one within a second)"
    );
    print_json(&r)?;
    Ok(0)
}
