//! `blat check` of an S3 target: credentials from the AWS chain, the
//! bucket listed, a probe object written and removed.

use super::{Checks, Status};
use crate::config::TargetConfig;

pub(super) fn check_s3(target: &TargetConfig, s3: &crate::config::S3Target, checks: &mut Checks) {
    use crate::store::s3::S3Store;
    use crate::store::ObjectStore;
    let name = target.name.as_str();
    let store = match S3Store::connect(s3) {
        Ok(s) => s,
        Err(e) => {
            checks.fail(
                name,
                "credentials",
                format!("{e:#}"),
                format!(
                    "see the message; the target file is {}",
                    target.file.display()
                ),
            );
            return;
        }
    };
    match store.credentials_source() {
        Ok(provider) => checks.add(
            name,
            "credentials",
            Status::Ok,
            format!("the AWS chain gives credentials ({provider})"),
        ),
        Err(e) => {
            checks.fail(
                name,
                "credentials",
                format!("{e:#}"),
                "set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE for the user blat runs as, or give the machine a role",
            );
            for check in ["bucket", "write"] {
                checks.add(name, check, Status::Skip, "not checked: no credentials");
            }
            return;
        }
    }
    let prefix = s3.prefix.as_str();
    let shown = format!("{}/{prefix}", store.describe());
    if let Err(e) = store.list_one(prefix) {
        checks.fail(
            name,
            "bucket",
            format!("{e:#}"),
            format!(
                "create the bucket, or correct `bucket`/`endpoint`/`region` in {}; the identity needs s3:ListBucket",
                target.file.display()
            ),
        );
        checks.add(
            name,
            "write",
            Status::Skip,
            "not checked: the bucket cannot be listed",
        );
        return;
    }
    checks.add(name, "bucket", Status::Ok, format!("{shown} can be listed"));
    check_s3_write(&store, name, prefix, checks);
}

/// A probe object under the prefix can be written and removed.
fn check_s3_write(
    store: &dyn crate::store::ObjectStore,
    name: &str,
    prefix: &str,
    checks: &mut Checks,
) {
    use crate::store::Put;
    let key = format!(
        "{prefix}.blat-check-{}-{}",
        std::process::id(),
        crate::atomic::token(12)
    );
    let body = b"blat check: a probe object, removed at once\n";
    let put = store.put(
        &Put {
            key: &key,
            metadata: &[],
            content_type: "text/plain",
            size_hint: body.len() as u64,
            journal: &|_| {},
            progress: &|_| {},
        },
        &mut |w| Ok(w.write_all(body)?),
    );
    match put.and_then(|_| store.delete(&key)) {
        Ok(()) => checks.add(
            name,
            "write",
            Status::Ok,
            format!("a probe object {key} was written and removed"),
        ),
        Err(e) => checks.fail(
            name,
            "write",
            format!("{e:#}"),
            "the identity needs s3:PutObject and s3:DeleteObject on the bucket under the prefix",
        ),
    }
}
