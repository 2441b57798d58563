//! What the Alertmanager keeps on disk under `<data_dir>/alerts`: the notification log and the
//! silences, both as fsynced journals.

pub mod journal;
pub mod nflog;
pub mod silences;
