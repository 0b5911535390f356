//! Binary WebSocket packets: audio `{0x01, stream_id u32 BE, packet_id u32 BE, data}` and
//! image `{0x02, image_id u32 BE, image_type u32 BE, data}`.

/// Bytes before the payload in both packet kinds.
pub const HEADER_LEN: usize = 9;
/// Type byte of an audio packet.
pub const TYPE_AUDIO: u8 = 0x01;
/// Type byte of an image packet.
pub const TYPE_IMAGE: u8 = 0x02;

/// Which part of an image a packet carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    Full = 1,
    Thumbnail = 2,
}

/// Why a binary frame was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("binary packet of {0} bytes is shorter than the 9-byte header")]
    TooShort(usize),
    #[error("binary packet type 0x{0:02x} is neither audio (0x01) nor image (0x02)")]
    UnknownType(u8),
    #[error("image packet type {0} is neither full (1) nor thumbnail (2)")]
    UnknownImageKind(u32),
}

/// A parsed binary packet borrowing its payload from the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packet<'a> {
    Audio {
        stream_id: u32,
        packet_id: u32,
        data: &'a [u8],
    },
    Image {
        image_id: u32,
        kind: ImageKind,
        data: &'a [u8],
    },
}

impl<'a> Packet<'a> {
    /// Parses a binary frame; never panics.
    pub fn parse(frame: &'a [u8]) -> Result<Self, PacketError> {
        if frame.len() < HEADER_LEN {
            // An unknown type byte is the more useful message when there is one.
            if let Some(&t) = frame.first()
                && t != TYPE_AUDIO
                && t != TYPE_IMAGE
            {
                return Err(PacketError::UnknownType(t));
            }
            return Err(PacketError::TooShort(frame.len()));
        }
        let a = u32::from_be_bytes([frame[1], frame[2], frame[3], frame[4]]);
        let b = u32::from_be_bytes([frame[5], frame[6], frame[7], frame[8]]);
        let data = &frame[HEADER_LEN..];
        match frame[0] {
            TYPE_AUDIO => Ok(Packet::Audio {
                stream_id: a,
                packet_id: b,
                data,
            }),
            TYPE_IMAGE => {
                let kind = match b {
                    1 => ImageKind::Full,
                    2 => ImageKind::Thumbnail,
                    other => return Err(PacketError::UnknownImageKind(other)),
                };
                Ok(Packet::Image {
                    image_id: a,
                    kind,
                    data,
                })
            }
            other => Err(PacketError::UnknownType(other)),
        }
    }

    /// Appends the wire form of this packet to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        match *self {
            Packet::Audio {
                stream_id,
                packet_id,
                data,
            } => write_header(out, TYPE_AUDIO, stream_id, packet_id, data),
            Packet::Image {
                image_id,
                kind,
                data,
            } => write_header(out, TYPE_IMAGE, image_id, kind as u32, data),
        }
    }

    /// The wire form of this packet.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.data().len());
        self.write_to(&mut out);
        out
    }

    /// The payload.
    pub fn data(&self) -> &'a [u8] {
        match *self {
            Packet::Audio { data, .. } | Packet::Image { data, .. } => data,
        }
    }
}

fn write_header(out: &mut Vec<u8>, kind: u8, a: u32, b: u32, data: &[u8]) {
    out.reserve(HEADER_LEN + data.len());
    out.push(kind);
    out.extend_from_slice(&a.to_be_bytes());
    out.extend_from_slice(&b.to_be_bytes());
    out.extend_from_slice(data);
}

/// An audio packet as a client sends it (packet_id 0: the server numbers packets).
pub fn audio_packet(stream_id: u32, data: &[u8]) -> Vec<u8> {
    Packet::Audio {
        stream_id,
        packet_id: 0,
        data,
    }
    .to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_round_trip_is_big_endian() {
        let p = Packet::Audio {
            stream_id: 22695,
            packet_id: 0x01020304,
            data: &[9, 8, 7],
        };
        let bytes = p.to_vec();
        assert_eq!(
            bytes,
            [0x01, 0, 0, 0x58, 0xa7, 1, 2, 3, 4, 9, 8, 7].to_vec()
        );
        assert_eq!(Packet::parse(&bytes).unwrap(), p);
    }

    #[test]
    fn client_packets_carry_packet_id_zero() {
        let bytes = audio_packet(7, b"opus");
        assert_eq!(&bytes[5..9], &[0, 0, 0, 0]);
        assert_eq!(
            Packet::parse(&bytes).unwrap(),
            Packet::Audio {
                stream_id: 7,
                packet_id: 0,
                data: b"opus"
            }
        );
    }

    #[test]
    fn image_packets_both_kinds() {
        for kind in [ImageKind::Full, ImageKind::Thumbnail] {
            let p = Packet::Image {
                image_id: 59725,
                kind,
                data: &[0xff, 0xd8],
            };
            let bytes = p.to_vec();
            assert_eq!(bytes[0], 0x02);
            assert_eq!(bytes[8], kind as u8);
            assert_eq!(Packet::parse(&bytes).unwrap(), p);
        }
    }

    #[test]
    fn empty_payload_is_fine() {
        let bytes = audio_packet(1, &[]);
        assert_eq!(Packet::parse(&bytes).unwrap().data(), &[] as &[u8]);
    }

    #[test]
    fn bad_frames_are_errors_not_panics() {
        assert_eq!(Packet::parse(&[]), Err(PacketError::TooShort(0)));
        assert_eq!(Packet::parse(&[1, 0, 0]), Err(PacketError::TooShort(3)));
        assert_eq!(Packet::parse(&[2; 8]), Err(PacketError::TooShort(8)));
        assert_eq!(Packet::parse(&[7; 3]), Err(PacketError::UnknownType(7)));
        assert_eq!(Packet::parse(&[0; 12]), Err(PacketError::UnknownType(0)));
        assert_eq!(
            Packet::parse(&[2, 0, 0, 0, 1, 0, 0, 0, 3, 1]),
            Err(PacketError::UnknownImageKind(3))
        );
        // Fuzz-ish: every short prefix of every type byte.
        for t in 0..=255u8 {
            for len in 0..HEADER_LEN {
                let mut f = vec![0u8; len];
                if len > 0 {
                    f[0] = t;
                }
                assert!(Packet::parse(&f).is_err());
            }
        }
    }
}
