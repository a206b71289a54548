//! The MySQL-family servers the services script starts: MariaDB (`RTSYNC_MARIADB_URL`) and Oracle
//! MySQL (`RTSYNC_MYSQL_URL`). Every MySQL test runs against each of them as one test per server
//! ([`per_mysql_server!`](crate::per_mysql_server)), so a failure names the server. Both are
//! always started (`scripts/test.sh`, CI): a missing URL fails the test, it never skips it.

use mysql_async::{Conn, Opts, OptsBuilder, Pool};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MySqlServer {
    /// MariaDB 10.11, Debian 12's package (`scripts/services.sh start mariadb`).
    MariaDb,
    /// Oracle MySQL 9.7, Debian unstable's build unpacked by `scripts/services.sh start mysql`.
    OracleMySql,
}

impl MySqlServer {
    pub fn name(self) -> &'static str {
        match self {
            MySqlServer::MariaDb => "MariaDB",
            MySqlServer::OracleMySql => "Oracle MySQL",
        }
    }

    pub fn is_mariadb(self) -> bool {
        self == MySqlServer::MariaDb
    }

    /// The variable holding this server's `mysql://` URL.
    pub fn env_var(self) -> &'static str {
        match self {
            MySqlServer::MariaDb => "RTSYNC_MARIADB_URL",
            MySqlServer::OracleMySql => "RTSYNC_MYSQL_URL",
        }
    }

    /// The server's URL (user `rtsync`, all privileges, database `rtsync`).
    pub fn url(self) -> String {
        let var = self.env_var();
        std::env::var(var).unwrap_or_else(|_| {
            panic!(
                "{var} is not set: the {} tests need it; run `scripts/services.sh start mariadb mysql` and \
                 `eval \"$(scripts/services.sh env)\"` (the README's test command does both)",
                self.name()
            )
        })
    }

    /// Connection options over TCP (never the server's unix socket).
    pub fn opts(self) -> Opts {
        let url = self.url();
        let opts =
            Opts::from_url(&url).unwrap_or_else(|e| panic!("{}: {url} is not a mysql:// URL: {e}", self.env_var()));
        OptsBuilder::from_opts(opts).prefer_socket(false).into()
    }

    pub async fn connect(self) -> Conn {
        Conn::new(self.opts()).await.unwrap_or_else(|e| panic!("connecting to {} ({}): {e}", self.name(), self.url()))
    }

    pub fn pool(self) -> Pool {
        Pool::new(self.opts())
    }
}

/// `per_mysql_server!(async NAME);` (or `per_mysql_server!(fn NAME);` for a blocking test) turns
/// the function `NAME(server: MySqlServer)` in scope into the tests `NAME::mariadb` and
/// `NAME::oracle_mysql`. Its file must have `MySqlServer` in scope (`use common::*`).
#[macro_export]
macro_rules! per_mysql_server {
    (async $name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn mariadb() {
                super::$name(super::MySqlServer::MariaDb).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn oracle_mysql() {
                super::$name(super::MySqlServer::OracleMySql).await
            }
        }
    };
    (fn $name:ident) => {
        mod $name {
            #[test]
            fn mariadb() {
                super::$name(super::MySqlServer::MariaDb)
            }

            #[test]
            fn oracle_mysql() {
                super::$name(super::MySqlServer::OracleMySql)
            }
        }
    };
}
