//! Delta deletion vectors (DVs): the rows of a data file that are no longer in the table.
//!
//! A DV is a set of row positions, stored as a 64-bit Roaring bitmap in its "portable"
//! serialization, behind the magic number 1681511377 (little endian). On disk (storage type
//! `u`), one DV file holds many DVs:
//!
//! ```text
//! 1 byte            format version (1)
//! per DV, at its `offset`:
//!   4 bytes (BE)    size = 4 + bitmap bytes      (the descriptor's `sizeInBytes`)
//!   4 bytes (LE)    magic 1681511377
//!   size - 4 bytes  portable RoaringTreemap
//!   4 bytes (BE)    CRC-32 of the magic and the bitmap
//! ```
//!
//! The file is `deletion_vector_<uuid>.bin` at the table root; the descriptor names it by the
//! UUID's 20-character Z85 encoding. Inline DVs (`i`: the Z85-encoded magic and bitmap in the
//! log) and absolute paths (`p`) are read too; rtsync writes only `u` files, one per commit.

use std::sync::Arc;

use deltalake::kernel::{DeletionVectorDescriptor, StorageType};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use roaring::RoaringTreemap;
use rtsync_core::{ErrorKind, SyncError, SyncResult};

/// The magic number in front of a portable Roaring bitmap.
const PORTABLE_MAGIC: u32 = 1_681_511_377;
/// The DV file format version.
const FORMAT_VERSION: u8 = 1;

fn dv_error(message: impl Into<String>) -> SyncError {
    SyncError::new(ErrorKind::Sink, message)
}

/// The DV file of a `u` descriptor, relative to the table root.
pub(crate) fn relative_path(encoded: &str) -> SyncResult<String> {
    let bytes = encoded.as_bytes();
    if bytes.len() < 20 {
        return Err(dv_error(format!("deletion vector path {encoded:?} is shorter than a Z85 UUID")));
    }
    let (prefix, id) = encoded.split_at(bytes.len() - 20);
    let raw = z85::decode(id).map_err(|_| dv_error(format!("deletion vector path {encoded:?} is not Z85")))?;
    let uuid = uuid::Uuid::from_slice(&raw)
        .map_err(|e| SyncError::with_source(ErrorKind::Sink, format!("deletion vector path {encoded:?}"), e))?;
    Ok(if prefix.is_empty() {
        format!("deletion_vector_{uuid}.bin")
    } else {
        format!("{prefix}/deletion_vector_{uuid}.bin")
    })
}

/// Parses magic + bitmap.
fn parse_bitmap(data: &[u8]) -> SyncResult<RoaringTreemap> {
    let magic = data.get(..4).map(|m| u32::from_le_bytes([m[0], m[1], m[2], m[3]]));
    if magic != Some(PORTABLE_MAGIC) {
        return Err(dv_error(format!("deletion vector has magic {magic:?}, not the portable Roaring format")));
    }
    RoaringTreemap::deserialize_from(&data[4..])
        .map_err(|e| SyncError::with_source(ErrorKind::Sink, "reading a deletion vector bitmap", e))
}

/// The row positions a descriptor deletes. `store` is rooted at the table.
pub(crate) async fn read(store: &Arc<dyn ObjectStore>, dv: &DeletionVectorDescriptor) -> SyncResult<RoaringTreemap> {
    let path = match dv.storage_type {
        StorageType::Inline => {
            let data = z85::decode(&dv.path_or_inline_dv)
                .map_err(|_| dv_error("an inline deletion vector is not valid Z85"))?;
            return parse_bitmap(&data);
        }
        StorageType::UuidRelativePath => Path::parse(relative_path(&dv.path_or_inline_dv)?)
            .map_err(|e| SyncError::with_source(ErrorKind::Sink, "deletion vector path", e))?,
        StorageType::AbsolutePath => {
            return Err(dv_error(format!(
                "deletion vector at absolute path {} is not supported by rtsync",
                dv.path_or_inline_dv
            )));
        }
    };
    let offset = dv.offset.unwrap_or(1).max(0) as u64;
    let size = u64::try_from(dv.size_in_bytes).map_err(|_| dv_error("negative deletion vector size"))?;
    // size field + magic + bitmap + CRC
    let bytes = store
        .get_range(&path, offset..offset + 4 + size + 4)
        .await
        .map_err(|e| SyncError::with_source(ErrorKind::Transient, format!("reading deletion vector {path}"), e))?;
    let stored_size = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as u64;
    if stored_size != size {
        return Err(dv_error(format!(
            "deletion vector in {path} at {offset}: size {stored_size}, the log says {size}"
        )));
    }
    let data = &bytes[4..4 + size as usize];
    let crc = &bytes[4 + size as usize..];
    if crc32fast::hash(data) != u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]) {
        return Err(dv_error(format!("deletion vector in {path} at {offset}: CRC mismatch")));
    }
    let bitmap = parse_bitmap(data)?;
    if bitmap.len() as i64 != dv.cardinality {
        return Err(dv_error(format!(
            "deletion vector in {path} at {offset} holds {} rows, the log says {}",
            bitmap.len(),
            dv.cardinality
        )));
    }
    Ok(bitmap)
}

/// One DV file being built: the bitmaps of one commit.
pub(crate) struct DvFile {
    uuid: uuid::Uuid,
    bytes: Vec<u8>,
}

impl DvFile {
    pub(crate) fn new() -> Self {
        Self::with_uuid(uuid::Uuid::new_v4())
    }

    fn with_uuid(uuid: uuid::Uuid) -> Self {
        Self { uuid, bytes: vec![FORMAT_VERSION] }
    }

    /// Appends a bitmap and returns its descriptor.
    pub(crate) fn push(&mut self, bitmap: &RoaringTreemap) -> SyncResult<DeletionVectorDescriptor> {
        let offset = i32::try_from(self.bytes.len()).map_err(|_| dv_error("deletion vector file over 2 GiB"))?;
        let mut data = Vec::with_capacity(4 + bitmap.serialized_size());
        data.extend_from_slice(&PORTABLE_MAGIC.to_le_bytes());
        bitmap
            .serialize_into(&mut data)
            .map_err(|e| SyncError::with_source(ErrorKind::Internal, "serializing a deletion vector", e))?;
        let size = i32::try_from(data.len()).map_err(|_| dv_error("deletion vector over 2 GiB"))?;
        self.bytes.extend_from_slice(&(size as u32).to_be_bytes());
        self.bytes.extend_from_slice(&data);
        self.bytes.extend_from_slice(&crc32fast::hash(&data).to_be_bytes());
        Ok(DeletionVectorDescriptor {
            storage_type: StorageType::UuidRelativePath,
            path_or_inline_dv: z85::encode(self.uuid.as_bytes()),
            offset: Some(offset),
            size_in_bytes: size,
            cardinality: bitmap.len() as i64,
        })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.bytes.len() == 1
    }

    /// The file's path relative to the table root.
    pub(crate) fn path(&self) -> String {
        format!("deletion_vector_{}.bin", self.uuid)
    }

    /// Writes the file (before the commit that references it).
    pub(crate) async fn write(self, store: &Arc<dyn ObjectStore>) -> SyncResult<u64> {
        let path = Path::from(self.path());
        let size = self.bytes.len() as u64;
        store
            .put(&path, self.bytes.into())
            .await
            .map_err(|e| SyncError::with_source(ErrorKind::Transient, format!("writing deletion vector {path}"), e))?;
        Ok(size)
    }
}

#[cfg(test)]
mod tests {
    use object_store::memory::InMemory;

    use super::*;

    #[test]
    fn layout_matches_the_protocol() {
        // rows {0, 9}: the shape of the DV in delta-rs's Databricks-written test table
        let uuid = uuid::Uuid::parse_str("d2c639aa-8816-431a-aaf6-d3fe2512ff61").unwrap();
        let mut file = DvFile::with_uuid(uuid);
        let bitmap: RoaringTreemap = [0u64, 9].into_iter().collect();
        let dv = file.push(&bitmap).unwrap();
        assert_eq!(dv.offset, Some(1));
        assert_eq!(dv.cardinality, 2);
        // version, size, magic, then the portable bitmap: 1 high 32-bit bucket holding
        // a RoaringBitmap with one array container {0, 9}
        let expected_bitmap: Vec<u8> = [
            &1u64.to_le_bytes()[..],     // buckets
            &0u32.to_le_bytes()[..],     // high bits of the bucket
            &12346u32.to_le_bytes()[..], // SERIAL_COOKIE_NO_RUNCONTAINER
            &1u32.to_le_bytes()[..],     // containers
            &[0, 0, 1, 0],               // key 0, cardinality - 1 = 1
            &[16, 0, 0, 0],              // offset of the container
            &[0, 0, 9, 0],               // 0, 9
        ]
        .concat();
        assert_eq!(dv.size_in_bytes as usize, 4 + expected_bitmap.len());
        assert_eq!(file.bytes[0], 1);
        assert_eq!(&file.bytes[1..5], &(dv.size_in_bytes as u32).to_be_bytes());
        assert_eq!(&file.bytes[5..9], &PORTABLE_MAGIC.to_le_bytes());
        assert_eq!(&file.bytes[9..9 + expected_bitmap.len()], expected_bitmap.as_slice());
        assert_eq!(file.path(), "deletion_vector_d2c639aa-8816-431a-aaf6-d3fe2512ff61.bin");
        assert_eq!(relative_path(&dv.path_or_inline_dv).unwrap(), file.path());
        // the descriptor example of the Delta protocol
        assert_eq!(
            relative_path("ab^-aqEH.-t@S}K{vb[*k^").unwrap(),
            "ab/deletion_vector_d2c639aa-8816-431a-aaf6-d3fe2512ff61.bin"
        );
    }

    #[tokio::test]
    async fn written_bitmaps_read_back() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let mut file = DvFile::new();
        let a: RoaringTreemap = [3u64, 4, 1 << 33].into_iter().collect();
        let b: RoaringTreemap = (0u64..10_000).step_by(3).collect();
        let da = file.push(&a).unwrap();
        let db = file.push(&b).unwrap();
        assert!(!file.is_empty());
        file.write(&store).await.unwrap();
        assert_eq!(read(&store, &da).await.unwrap(), a);
        assert_eq!(read(&store, &db).await.unwrap(), b);
        let mut inline = PORTABLE_MAGIC.to_le_bytes().to_vec();
        a.serialize_into(&mut inline).unwrap();
        while !inline.len().is_multiple_of(4) {
            inline.push(0);
        }
        let di = DeletionVectorDescriptor {
            storage_type: StorageType::Inline,
            path_or_inline_dv: z85::encode(&inline),
            offset: None,
            size_in_bytes: inline.len() as i32,
            cardinality: 3,
        };
        assert_eq!(read(&store, &di).await.unwrap(), a);
        let mut broken = db.clone();
        broken.cardinality += 1;
        assert!(read(&store, &broken).await.is_err());
    }
}
