//! The server side of TDS 7.4, as far as tiberius uses it: packets, the requests (PRELOGIN,
//! LOGIN7, SQL batch, RPC `sp_executesql` with parameters) and the response tokens
//! (LOGINACK, ENVCHANGE, COLMETADATA, ROW, DONE/DONEINPROC/DONEPROC, RETURNSTATUS, ERROR).
//! Written from the protocol description ([MS-TDS]); no TLS, so a client must ask for no
//! encryption (`encrypt=off`).

use std::borrow::Cow;
use std::io;

use tiberius::ColumnData;
use tiberius::numeric::Numeric;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub const PKT_BATCH: u8 = 0x01;
pub const PKT_RPC: u8 = 0x03;
pub const PKT_RESPONSE: u8 = 0x04;
pub const PKT_ATTENTION: u8 = 0x06;
pub const PKT_LOGIN7: u8 = 0x10;
pub const PKT_PRELOGIN: u8 = 0x12;

const TOKEN_COLMETADATA: u8 = 0x81;
const TOKEN_ROW: u8 = 0xD1;
const TOKEN_ERROR: u8 = 0xAA;
const TOKEN_LOGINACK: u8 = 0xAD;
const TOKEN_ENVCHANGE: u8 = 0xE3;
const TOKEN_RETURNSTATUS: u8 = 0x79;
pub const TOKEN_DONE: u8 = 0xFD;
pub const TOKEN_DONEPROC: u8 = 0xFE;
pub const TOKEN_DONEINPROC: u8 = 0xFF;

pub const DONE_FINAL: u16 = 0x00;
pub const DONE_MORE: u16 = 0x01;
pub const DONE_ERROR: u16 = 0x02;
pub const DONE_COUNT: u16 = 0x10;
pub const DONE_ATTN: u16 = 0x20;

pub const ENV_DATABASE: u8 = 1;
pub const ENV_PACKET_SIZE: u8 = 4;
pub const ENV_COLLATION: u8 = 7;
pub const ENV_BEGIN_TX: u8 = 8;
pub const ENV_COMMIT_TX: u8 = 9;

/// SQL_Latin1_General_CP1_CI_AS: LCID 0x0409 with its flags, sort id 52.
pub const COLLATION: [u8; 5] = [0x09, 0x04, 0xD0, 0x00, 0x34];

/// TDS 7.4, as LOGINACK states it (big-endian on the wire).
const TDS_74: u32 = 0x7400_0004;

/// Reads one message (its packets up to the one marked end-of-message). None at a clean EOF.
pub async fn read_message<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<Option<(u8, Vec<u8>)>> {
    let mut body = Vec::new();
    loop {
        let mut h = [0u8; 8];
        match r.read_exact(&mut h).await {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && body.is_empty() => return Ok(None),
            Err(e) => return Err(e),
        }
        let len = usize::from(u16::from_be_bytes([h[2], h[3]]));
        if len < 8 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("TDS packet length {len} < 8")));
        }
        let start = body.len();
        body.resize(start + len - 8, 0);
        r.read_exact(&mut body[start..]).await?;
        if h[1] & 0x01 != 0 {
            return Ok(Some((h[0], body)));
        }
    }
}

/// Writes `payload` as one message of `ty` in packets of at most `packet_size` bytes.
pub async fn write_message<W: AsyncWrite + Unpin>(
    w: &mut W,
    ty: u8,
    payload: &[u8],
    packet_size: usize,
) -> io::Result<()> {
    let room = packet_size.max(512) - 8;
    let mut out = Vec::with_capacity(payload.len() + payload.len() / room * 8 + 8);
    let chunks: Vec<&[u8]> = if payload.is_empty() { vec![&[][..]] } else { payload.chunks(room).collect() };
    let last = chunks.len() - 1;
    for (i, chunk) in chunks.into_iter().enumerate() {
        let len = (chunk.len() + 8) as u16;
        out.extend_from_slice(&[ty, u8::from(i == last)]);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&[0, 0, (i as u8).wrapping_add(1), 0]);
        out.extend_from_slice(chunk);
    }
    w.write_all(&out).await?;
    w.flush().await
}

/// A cursor over a request's bytes; every read past the end is an error naming what was read.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub fn bytes(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.buf.len());
        let end = end.ok_or_else(|| format!("the request ends inside {what}"))?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    pub fn u8(&mut self, what: &str) -> Result<u8, String> {
        Ok(self.bytes(1, what)?[0])
    }

    pub fn u16(&mut self, what: &str) -> Result<u16, String> {
        let b = self.bytes(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    pub fn u32(&mut self, what: &str) -> Result<u32, String> {
        let b = self.bytes(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn u64(&mut self, what: &str) -> Result<u64, String> {
        let b = self.bytes(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn utf16(&mut self, units: usize, what: &str) -> Result<String, String> {
        utf16_text(self.bytes(units * 2, what)?, what)
    }

    /// A PLP value: None for NULL.
    fn plp(&mut self, what: &str) -> Result<Option<Vec<u8>>, String> {
        let total = self.u64(what)?;
        if total == u64::MAX {
            return Ok(None);
        }
        let mut out = Vec::new();
        loop {
            let n = self.u32(what)? as usize;
            if n == 0 {
                return Ok(Some(out));
            }
            out.extend_from_slice(self.bytes(n, what)?);
        }
    }
}

fn utf16_text(bytes: &[u8], what: &str) -> Result<String, String> {
    if !bytes.len().is_multiple_of(2) {
        return Err(format!("{what}: odd UTF-16 length"));
    }
    let units: Vec<u16> = bytes.chunks(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
    String::from_utf16(&units).map_err(|e| format!("{what}: {e}"))
}

/// Skips a request's ALL_HEADERS (transaction descriptor and the like).
fn skip_all_headers(r: &mut Reader<'_>) -> Result<(), String> {
    let total = r.u32("ALL_HEADERS")? as usize;
    r.bytes(total.saturating_sub(4), "ALL_HEADERS")?;
    Ok(())
}

/// What the client asked for in its PRELOGIN: the ENCRYPTION option's value.
pub fn prelogin_encryption(body: &[u8]) -> Result<u8, String> {
    let mut r = Reader::new(body);
    loop {
        let token = r.u8("a PRELOGIN option")?;
        if token == 0xFF {
            return Err("PRELOGIN without an ENCRYPTION option".into());
        }
        let off = usize::from(u16::from_be_bytes([r.u8("PRELOGIN")?, r.u8("PRELOGIN")?]));
        let len = usize::from(u16::from_be_bytes([r.u8("PRELOGIN")?, r.u8("PRELOGIN")?]));
        if token == 1 && len == 1 {
            return body.get(off).copied().ok_or_else(|| "PRELOGIN ENCRYPTION out of range".to_string());
        }
    }
}

/// The PRELOGIN answer: version 16.0, encryption NOT_SUP (no TLS at all), no instance, no MARS.
pub fn prelogin_response() -> Vec<u8> {
    let options: [(u8, Vec<u8>); 5] =
        [(0, vec![16, 0, 0x10, 0x00, 0, 0]), (1, vec![0x02]), (2, vec![0]), (3, vec![]), (4, vec![0])];
    let mut head = Vec::new();
    let mut data = Vec::new();
    let base = options.len() * 5 + 1;
    for (token, value) in &options {
        head.push(*token);
        head.extend_from_slice(&((base + data.len()) as u16).to_be_bytes());
        head.extend_from_slice(&(value.len() as u16).to_be_bytes());
        data.extend_from_slice(value);
    }
    head.push(0xFF);
    head.extend(data);
    head
}

/// The parts of a LOGIN7 record the simulator checks.
#[derive(Debug, Clone, PartialEq)]
pub struct Login {
    pub user: String,
    pub password: String,
    pub database: String,
    pub app: String,
    pub packet_size: u32,
}

pub fn parse_login7(body: &[u8]) -> Result<Login, String> {
    let mut r = Reader::new(body);
    r.u32("LOGIN7 length")?;
    r.u32("LOGIN7 TDS version")?;
    let packet_size = r.u32("LOGIN7 packet size")?;
    let field = |at: usize, what: &str| -> Result<Vec<u8>, String> {
        let mut h = Reader::new(body);
        h.bytes(at, what)?;
        let off = usize::from(h.u16(what)?);
        let len = usize::from(h.u16(what)?);
        let mut v = Reader::new(body);
        v.bytes(off, what)?;
        Ok(v.bytes(len * 2, what)?.to_vec())
    };
    let text = |at: usize, what: &str| utf16_text(&field(at, what)?, what);
    // The password travels with each byte's nibbles swapped and XORed with 0xA5.
    let password: Vec<u8> = field(44, "LOGIN7 password")?.iter().map(|b| (b ^ 0xA5).rotate_left(4)).collect();
    Ok(Login {
        user: text(40, "LOGIN7 user name")?,
        password: utf16_text(&password, "LOGIN7 password")?,
        app: text(48, "LOGIN7 application name")?,
        database: text(68, "LOGIN7 database")?,
        packet_size,
    })
}

/// The SQL text of a SQL batch request.
pub fn parse_batch(body: &[u8]) -> Result<String, String> {
    let mut r = Reader::new(body);
    skip_all_headers(&mut r)?;
    let rest = r.bytes(body.len() - r.pos, "the batch text")?;
    utf16_text(rest, "the batch text")
}

/// An RPC request to `sp_executesql`: the statement and the values of `@P1…`.
pub fn parse_rpc(body: &[u8]) -> Result<(String, Vec<ColumnData<'static>>), String> {
    let mut r = Reader::new(body);
    skip_all_headers(&mut r)?;
    let proc = r.u16("the RPC procedure")?;
    if proc != 0xFFFF {
        let name = r.utf16(usize::from(proc), "the RPC procedure name")?;
        return Err(format!("RPC to procedure {name}: the simulator only answers sp_executesql"));
    }
    let id = r.u16("the RPC procedure id")?;
    if id != 10 {
        return Err(format!("RPC to procedure id {id}: the simulator only answers sp_executesql (10)"));
    }
    r.u16("the RPC option flags")?;
    let mut values = Vec::new();
    while !r.at_end() {
        let n = usize::from(r.u8("a parameter name")?);
        r.utf16(n, "a parameter name")?;
        r.u8("a parameter's status")?;
        values.push(read_param(&mut r)?);
    }
    if values.len() < 2 {
        return Err("sp_executesql without @stmt and @params".into());
    }
    let stmt = match values.remove(0) {
        ColumnData::String(Some(s)) => s.into_owned(),
        other => return Err(format!("sp_executesql's @stmt is {other:?}, not text")),
    };
    values.remove(0);
    Ok((stmt, values))
}

/// One parameter value with its TYPE_INFO: the types tiberius binds `&str`, `String`, `&[u8]`,
/// `Vec<u8>`, integers and `bool` as. Anything else is refused by name.
fn read_param(r: &mut Reader<'_>) -> Result<ColumnData<'static>, String> {
    let ty = r.u8("a parameter type")?;
    match ty {
        0x26 => {
            r.u8("INTN max length")?;
            Ok(match r.u8("INTN length")? {
                0 => ColumnData::I64(None),
                1 => ColumnData::U8(Some(r.u8("INTN")?)),
                2 => ColumnData::I16(Some(r.u16("INTN")? as i16)),
                4 => ColumnData::I32(Some(r.u32("INTN")? as i32)),
                8 => ColumnData::I64(Some(r.u64("INTN")? as i64)),
                n => return Err(format!("INTN parameter of length {n}")),
            })
        }
        0x68 => {
            r.u8("BITN max length")?;
            Ok(match r.u8("BITN length")? {
                0 => ColumnData::Bit(None),
                _ => ColumnData::Bit(Some(r.u8("BITN")? != 0)),
            })
        }
        0xE7 => {
            let max = r.u16("NVARCHAR max length")?;
            r.bytes(5, "NVARCHAR collation")?;
            let bytes = var_bytes(r, max, "NVARCHAR")?;
            let text = bytes.map(|b| utf16_text(&b, "an NVARCHAR parameter")).transpose()?;
            Ok(ColumnData::String(text.map(Cow::Owned)))
        }
        0xA5 => {
            let max = r.u16("VARBINARY max length")?;
            Ok(ColumnData::Binary(var_bytes(r, max, "VARBINARY")?.map(Cow::Owned)))
        }
        other => Err(format!("a parameter of TDS type 0x{other:02X}, which the simulator does not decode")),
    }
}

fn var_bytes(r: &mut Reader<'_>, max: u16, what: &str) -> Result<Option<Vec<u8>>, String> {
    if max == 0xFFFF {
        return r.plp(what);
    }
    let n = r.u16(what)?;
    if n == 0xFFFF {
        return Ok(None);
    }
    Ok(Some(r.bytes(usize::from(n), what)?.to_vec()))
}

/// A result column's type on the wire (TYPE_INFO). `None` lengths are `(max)` (PLP).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WireType {
    Bit,
    /// 1, 2, 4 or 8 bytes (tinyint … bigint).
    Int(u8),
    /// 4 or 8 bytes (real, float).
    Float(u8),
    Decimal(u8, u8),
    /// nvarchar(n) in characters, or nvarchar(max).
    NVarChar(Option<u16>),
    /// varbinary(n), or varbinary(max).
    VarBinary(Option<u16>),
    Guid,
    Xml,
    Date,
    Time(u8),
    DateTime,
    SmallDateTime,
    DateTime2(u8),
    DateTimeOffset(u8),
}

/// A result set: named, typed columns and rows of values.
#[derive(Debug, Clone, Default)]
pub struct ResultSet {
    pub columns: Vec<(String, WireType)>,
    pub rows: Vec<Vec<ColumnData<'static>>>,
}

impl ResultSet {
    pub fn new(columns: &[(&str, WireType)]) -> Self {
        ResultSet { columns: columns.iter().map(|(n, t)| (n.to_string(), *t)).collect(), rows: Vec::new() }
    }
}

fn decimal_len(precision: u8) -> u8 {
    1 + match precision {
        0..=9 => 4,
        10..=19 => 8,
        20..=28 => 12,
        _ => 16,
    }
}

fn time_len(scale: u8) -> usize {
    match scale {
        0..=2 => 3,
        3..=4 => 4,
        _ => 5,
    }
}

fn is_null(v: &ColumnData<'_>) -> bool {
    match v {
        ColumnData::U8(x) => x.is_none(),
        ColumnData::I16(x) => x.is_none(),
        ColumnData::I32(x) => x.is_none(),
        ColumnData::I64(x) => x.is_none(),
        ColumnData::F32(x) => x.is_none(),
        ColumnData::F64(x) => x.is_none(),
        ColumnData::Bit(x) => x.is_none(),
        ColumnData::String(x) => x.is_none(),
        ColumnData::Guid(x) => x.is_none(),
        ColumnData::Binary(x) => x.is_none(),
        ColumnData::Numeric(x) => x.is_none(),
        ColumnData::Xml(x) => x.is_none(),
        ColumnData::DateTime(x) => x.is_none(),
        ColumnData::SmallDateTime(x) => x.is_none(),
        ColumnData::Time(x) => x.is_none(),
        ColumnData::Date(x) => x.is_none(),
        ColumnData::DateTime2(x) => x.is_none(),
        ColumnData::DateTimeOffset(x) => x.is_none(),
    }
}

/// The response being built: a token stream.
#[derive(Default)]
pub struct Tokens(pub Vec<u8>);

impl Tokens {
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    fn utf16(&mut self, s: &str) {
        for u in s.encode_utf16() {
            self.u16(u);
        }
    }

    fn b_varchar(&mut self, s: &str) {
        self.0.push(s.encode_utf16().count() as u8);
        self.utf16(s);
    }

    /// A token with a u16 length: `body` writes its content.
    fn sized(&mut self, token: u8, body: impl FnOnce(&mut Tokens)) {
        let mut inner = Tokens::default();
        body(&mut inner);
        self.0.push(token);
        self.u16(inner.0.len() as u16);
        self.0.extend(inner.0);
    }

    pub fn env_text(&mut self, ty: u8, new: &str, old: &str) {
        self.sized(TOKEN_ENVCHANGE, |t| {
            t.0.push(ty);
            t.b_varchar(new);
            t.b_varchar(old);
        });
    }

    pub fn env_bytes(&mut self, ty: u8, new: &[u8], old: &[u8]) {
        self.sized(TOKEN_ENVCHANGE, |t| {
            t.0.push(ty);
            t.0.push(new.len() as u8);
            t.0.extend_from_slice(new);
            t.0.push(old.len() as u8);
            t.0.extend_from_slice(old);
        });
    }

    pub fn login_ack(&mut self) {
        self.sized(TOKEN_LOGINACK, |t| {
            t.0.push(1);
            t.0.extend_from_slice(&TDS_74.to_be_bytes());
            t.b_varchar("Microsoft SQL Server");
            t.0.extend_from_slice(&[16, 0, 0x10, 0x00]);
        });
    }

    pub fn done(&mut self, token: u8, status: u16, rows: u64) {
        self.0.push(token);
        self.u16(status);
        self.u16(0xC1);
        self.0.extend_from_slice(&rows.to_le_bytes());
    }

    pub fn return_status(&mut self, status: i32) {
        self.0.push(TOKEN_RETURNSTATUS);
        self.0.extend_from_slice(&status.to_le_bytes());
    }

    pub fn error(&mut self, number: u32, class: u8, message: &str) {
        self.sized(TOKEN_ERROR, |t| {
            t.0.extend_from_slice(&number.to_le_bytes());
            t.0.push(1);
            t.0.push(class);
            t.u16(message.encode_utf16().count() as u16);
            t.utf16(message);
            t.b_varchar("rtsync-mssql-sim");
            t.b_varchar("");
            t.0.extend_from_slice(&1u32.to_le_bytes());
        });
    }

    /// COLMETADATA and one ROW per row. A value that does not fit its column is an error
    /// (the simulator's own bug), naming both.
    pub fn result_set(&mut self, rs: &ResultSet) -> Result<(), String> {
        self.0.push(TOKEN_COLMETADATA);
        self.u16(rs.columns.len() as u16);
        for (name, ty) in &rs.columns {
            self.0.extend_from_slice(&0u32.to_le_bytes());
            self.u16(0x0001);
            self.type_info(*ty);
            self.b_varchar(name);
        }
        for row in &rs.rows {
            if row.len() != rs.columns.len() {
                return Err(format!("a row of {} values for {} columns", row.len(), rs.columns.len()));
            }
            self.0.push(TOKEN_ROW);
            for ((name, ty), v) in rs.columns.iter().zip(row) {
                self.value(*ty, v).map_err(|e| format!("column {name}: {e}"))?;
            }
        }
        Ok(())
    }

    fn type_info(&mut self, ty: WireType) {
        match ty {
            WireType::Bit => self.0.extend_from_slice(&[0x68, 1]),
            WireType::Int(n) => self.0.extend_from_slice(&[0x26, n]),
            WireType::Float(n) => self.0.extend_from_slice(&[0x6D, n]),
            WireType::Decimal(p, s) => self.0.extend_from_slice(&[0x6A, decimal_len(p), p, s]),
            WireType::NVarChar(n) => {
                self.0.push(0xE7);
                self.u16(n.map(|n| n * 2).unwrap_or(0xFFFF));
                self.0.extend_from_slice(&COLLATION);
            }
            WireType::VarBinary(n) => {
                self.0.push(0xA5);
                self.u16(n.unwrap_or(0xFFFF));
            }
            WireType::Guid => self.0.extend_from_slice(&[0x24, 16]),
            WireType::Xml => self.0.extend_from_slice(&[0xF1, 0]),
            WireType::Date => self.0.push(0x28),
            WireType::Time(s) => self.0.extend_from_slice(&[0x29, s]),
            WireType::DateTime => self.0.extend_from_slice(&[0x6F, 8]),
            WireType::SmallDateTime => self.0.extend_from_slice(&[0x6F, 4]),
            WireType::DateTime2(s) => self.0.extend_from_slice(&[0x2A, s]),
            WireType::DateTimeOffset(s) => self.0.extend_from_slice(&[0x2B, s]),
        }
    }

    fn plp(&mut self, data: Option<&[u8]>) {
        match data {
            None => self.0.extend_from_slice(&u64::MAX.to_le_bytes()),
            Some(d) => {
                self.0.extend_from_slice(&(d.len() as u64).to_le_bytes());
                if !d.is_empty() {
                    self.0.extend_from_slice(&(d.len() as u32).to_le_bytes());
                    self.0.extend_from_slice(d);
                }
                self.0.extend_from_slice(&0u32.to_le_bytes());
            }
        }
    }

    fn var(&mut self, max: Option<u16>, data: Option<&[u8]>) {
        match (max, data) {
            (None, d) => self.plp(d),
            (Some(_), None) => self.u16(0xFFFF),
            (Some(_), Some(d)) => {
                self.u16(d.len() as u16);
                self.0.extend_from_slice(d);
            }
        }
    }

    fn time(&mut self, increments: u64, scale: u8) {
        self.0.extend_from_slice(&increments.to_le_bytes()[..time_len(scale)]);
    }

    fn date(&mut self, days: u32) {
        self.0.extend_from_slice(&days.to_le_bytes()[..3]);
    }

    fn value(&mut self, ty: WireType, v: &ColumnData<'_>) -> Result<(), String> {
        if is_null(v) {
            match ty {
                WireType::NVarChar(n) | WireType::VarBinary(n) => self.var(n, None),
                WireType::Xml => self.plp(None),
                _ => self.0.push(0),
            }
            return Ok(());
        }
        let mismatch = || format!("a {v:?} value does not fit wire type {ty:?}");
        match (ty, v) {
            (WireType::Bit, ColumnData::Bit(Some(b))) => self.0.extend_from_slice(&[1, u8::from(*b)]),
            (WireType::Int(1), ColumnData::U8(Some(x))) => self.0.extend_from_slice(&[1, *x]),
            (WireType::Int(2), ColumnData::I16(Some(x))) => {
                self.0.push(2);
                self.0.extend_from_slice(&x.to_le_bytes());
            }
            (WireType::Int(4), ColumnData::I32(Some(x))) => {
                self.0.push(4);
                self.0.extend_from_slice(&x.to_le_bytes());
            }
            (WireType::Int(8), ColumnData::I64(Some(x))) => {
                self.0.push(8);
                self.0.extend_from_slice(&x.to_le_bytes());
            }
            (WireType::Float(4), ColumnData::F32(Some(x))) => {
                self.0.push(4);
                self.0.extend_from_slice(&x.to_le_bytes());
            }
            (WireType::Float(8), ColumnData::F64(Some(x))) => {
                self.0.push(8);
                self.0.extend_from_slice(&x.to_le_bytes());
            }
            (WireType::Decimal(p, s), ColumnData::Numeric(Some(n))) => {
                let value = rescale(*n, s).ok_or_else(mismatch)?;
                if value.unsigned_abs() >= 10u128.pow(u32::from(p)) {
                    return Err(format!("{n} does not fit decimal({p},{s})"));
                }
                let len = decimal_len(p);
                self.0.push(len);
                self.0.push(u8::from(value >= 0));
                self.0.extend_from_slice(&value.unsigned_abs().to_le_bytes()[..usize::from(len) - 1]);
            }
            (WireType::NVarChar(n), ColumnData::String(Some(s))) => {
                let units = s.encode_utf16().count();
                if n.is_some_and(|n| units > usize::from(n)) {
                    return Err(format!("{units} UTF-16 units do not fit nvarchar({})", n.unwrap_or(0)));
                }
                let bytes: Vec<u8> = s.encode_utf16().flat_map(u16::to_le_bytes).collect();
                self.var(n, Some(&bytes));
            }
            (WireType::VarBinary(n), ColumnData::Binary(Some(b))) => {
                if n.is_some_and(|n| b.len() > usize::from(n)) {
                    return Err(format!("{} bytes do not fit varbinary({})", b.len(), n.unwrap_or(0)));
                }
                self.var(n, Some(b));
            }
            (WireType::Guid, ColumnData::Guid(Some(g))) => {
                // SQL Server's GUID byte order: the first three groups little-endian.
                let b = g.as_bytes();
                self.0.push(16);
                self.0.extend_from_slice(&[b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6]]);
                self.0.extend_from_slice(&b[8..]);
            }
            (WireType::Xml, ColumnData::Xml(Some(x))) => {
                let bytes: Vec<u8> = x.to_string().encode_utf16().flat_map(u16::to_le_bytes).collect();
                self.plp(Some(&bytes));
            }
            (WireType::Date, ColumnData::Date(Some(d))) => {
                self.0.push(3);
                self.date(d.days());
            }
            (WireType::Time(s), ColumnData::Time(Some(t))) if t.scale() == s => {
                self.0.push(time_len(s) as u8);
                self.time(t.increments(), s);
            }
            (WireType::DateTime, ColumnData::DateTime(Some(d))) => {
                self.0.push(8);
                self.0.extend_from_slice(&d.days().to_le_bytes());
                self.0.extend_from_slice(&d.seconds_fragments().to_le_bytes());
            }
            (WireType::SmallDateTime, ColumnData::SmallDateTime(Some(d))) => {
                self.0.push(4);
                self.0.extend_from_slice(&d.days().to_le_bytes());
                self.0.extend_from_slice(&d.seconds_fragments().to_le_bytes());
            }
            (WireType::DateTime2(s), ColumnData::DateTime2(Some(d))) if d.time().scale() == s => {
                self.0.push(time_len(s) as u8 + 3);
                self.time(d.time().increments(), s);
                self.date(d.date().days());
            }
            (WireType::DateTimeOffset(s), ColumnData::DateTimeOffset(Some(d))) if d.datetime2().time().scale() == s => {
                self.0.push(time_len(s) as u8 + 5);
                self.time(d.datetime2().time().increments(), s);
                self.date(d.datetime2().date().days());
                self.0.extend_from_slice(&d.offset().to_le_bytes());
            }
            _ => return Err(mismatch()),
        }
        Ok(())
    }
}

/// `n` at `scale` digits, when that loses nothing.
fn rescale(n: Numeric, scale: u8) -> Option<i128> {
    let (v, s) = (n.value(), n.scale());
    if s <= scale {
        v.checked_mul(10i128.checked_pow(u32::from(scale - s))?)
    } else {
        let f = 10i128.checked_pow(u32::from(s - scale))?;
        (v % f == 0).then_some(v / f)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn prelogin_answer_offers_no_encryption() {
        let r = prelogin_response();
        // ENCRYPTION is the second option; its value is NOT_SUP (2).
        assert_eq!(r[5], 1);
        let off = usize::from(u16::from_be_bytes([r[6], r[7]]));
        assert_eq!(r[off], 0x02);
        assert_eq!(prelogin_encryption(&r).unwrap(), 0x02);
        assert_eq!(r[25], 0xFF);
    }

    #[test]
    fn values_that_do_not_fit_their_column_are_refused() {
        let mut t = Tokens::default();
        let too_long = ColumnData::String(Some("abc".into()));
        assert!(t.value(WireType::NVarChar(Some(2)), &too_long).unwrap_err().contains("do not fit nvarchar(2)"));
        let big = ColumnData::Numeric(Some(Numeric::new_with_scale(12_345, 0)));
        assert!(t.value(WireType::Decimal(4, 0), &big).is_err());
        assert!(t.value(WireType::Int(4), &ColumnData::I64(Some(1))).is_err());
        // NULL fits any column.
        t.value(WireType::Int(4), &ColumnData::String(None)).unwrap();
        t.value(WireType::NVarChar(None), &ColumnData::I32(None)).unwrap();
    }

    #[test]
    fn messages_split_into_packets_and_read_back_whole() {
        let payload: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let mut wire = Vec::new();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            write_message(&mut wire, PKT_RESPONSE, &payload, 4096).await.unwrap();
            assert_eq!(wire.len(), payload.len() + 3 * 8);
            let mut r = wire.as_slice();
            let (ty, body) = read_message(&mut r).await.unwrap().unwrap();
            assert_eq!((ty, body), (PKT_RESPONSE, payload));
            assert!(read_message(&mut r).await.unwrap().is_none());
        });
    }
}
