//! GPIO lines: PTT on an output, carrier detect (COS) on an input.
//!
//! Two ways to reach a line:
//! - a Raspberry Pi pin by its BCM number (`type = "gpio"`, through `rppal`), and
//! - a line of a Linux GPIO character device, `/dev/gpiochipN` plus the line offset
//!   (`type = "gpiochip"`, through `gpiocdev`), for the Pi 5 and other boards.
//!
//! Both sit behind two small traits, [`OutputLine`] and [`InputLine`], so the keying,
//! polarity and debounce rules are tested with in-memory lines.
//!
//! Polarity: with `active_low = false` the PTT pin is driven high to key and low to unkey;
//! with `active_low = true` it is the reverse. The carrier input reads "carrier up" when the
//! pin is high, or low with `active_low = true` (the usual case: a COS output pulling the pin
//! to ground against a pull-up).
//!
//! Safety on the way out: a Raspberry Pi pin is left driven at the unkeyed level when the
//! PTT is dropped (it is not switched back to a floating input). A character-device line is
//! released to the kernel, which on most boards keeps its last level. Neither survives a
//! crash while keyed; the `ptt-off` command ([`force_off`], [`force_off_chip`]) and a
//! hardware pull-down on the keying transistor cover that.

use std::io;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tracing::info;

use super::{CarrierDetect, Fault, Ptt, RadioError};
use crate::audio::debug_fields;

/// The highest BCM GPIO number on the Raspberry Pi's 40-pin header.
pub const MAX_BCM_PIN: u8 = 27;

/// The consumer name shown by `gpioinfo` for the lines we hold.
const CONSUMER: &str = "zello-gateway";

/// A GPIO output: drives a line high or low.
pub trait OutputLine: Send {
    /// Drives the line high (`true`) or low (`false`).
    fn set(&mut self, high: bool) -> io::Result<()>;
}

/// A GPIO input: reads a line's level.
pub trait InputLine: Send {
    /// Whether the line is high.
    fn get(&mut self) -> io::Result<bool>;
}

/// Internal pull resistor of a carrier-detect input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pull {
    /// Pull-up: the pin reads high while nothing drives it (open-collector COS outputs).
    Up,
    /// Pull-down: the pin reads low while nothing drives it.
    Down,
    /// No internal pull (an external resistor or a driven output).
    #[default]
    None,
}

/// `ptt = { type = "gpio", pin = 17 }`: a Raspberry Pi pin by BCM number.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpioPttSettings {
    /// BCM GPIO number, 0 to 27 (not the physical pin number of the header).
    pub pin: u8,
    /// Drive the pin low to key (default false: high keys).
    #[serde(default)]
    pub active_low: bool,
}

/// `ptt = { type = "gpiochip", chip = "/dev/gpiochip0", line = 17 }`: a line of a GPIO
/// character device.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpioChipPttSettings {
    /// The GPIO character device, such as `/dev/gpiochip0` (list them with `gpiodetect`).
    pub chip: PathBuf,
    /// The line offset on that chip (see `gpioinfo`).
    pub line: u32,
    /// Drive the line low to key (default false: high keys).
    #[serde(default)]
    pub active_low: bool,
}

fn default_debounce_ms() -> u32 {
    20
}

/// `carrier = { type = "gpio", pin = 27, active_low = true, pull = "up" }`: a Raspberry Pi
/// pin by BCM number.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpioCarrierSettings {
    /// BCM GPIO number, 0 to 27.
    pub pin: u8,
    /// Carrier is up while the pin is low (default false: while high).
    #[serde(default)]
    pub active_low: bool,
    /// Internal pull resistor: "up", "down" or "none" (default "none").
    #[serde(default)]
    pub pull: Pull,
    /// A level change counts only once it has held this long, in ms (default 20).
    #[serde(default = "default_debounce_ms")]
    pub debounce_ms: u32,
}

/// `carrier = { type = "gpiochip", chip = "/dev/gpiochip0", line = 27, ... }`: a line of a
/// GPIO character device.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpioChipCarrierSettings {
    /// The GPIO character device, such as `/dev/gpiochip0`.
    pub chip: PathBuf,
    /// The line offset on that chip.
    pub line: u32,
    /// Carrier is up while the line is low (default false: while high).
    #[serde(default)]
    pub active_low: bool,
    /// Internal pull resistor: "up", "down" or "none" (default "none").
    #[serde(default)]
    pub pull: Pull,
    /// A level change counts only once it has held this long, in ms (default 20).
    #[serde(default = "default_debounce_ms")]
    pub debounce_ms: u32,
}

/// Upper bound for `debounce_ms`: beyond this the squelch would lag by seconds.
const MAX_DEBOUNCE_MS: u32 = 2000;

fn check_debounce(debounce_ms: u32) -> Result<(), Fault> {
    if debounce_ms > MAX_DEBOUNCE_MS {
        return Err(Fault::Setting(format!(
            "carrier.debounce_ms = {debounce_ms}: at most {MAX_DEBOUNCE_MS} ms (a few tens \
             of ms is usual)"
        )));
    }
    Ok(())
}

/// Checks a BCM pin number.
fn check_pin(key: &str, pin: u8) -> Result<(), Fault> {
    if pin > MAX_BCM_PIN {
        return Err(Fault::Setting(format!(
            "{key} = {pin}: not a GPIO of the 40-pin header; use a BCM GPIO number from 0 to \
             {MAX_BCM_PIN} (BCM numbering, not the physical pin number: physical pin 11 is \
             GPIO 17)"
        )));
    }
    Ok(())
}

// --- Raspberry Pi pins (rppal) ---

/// The GPIO library's error behind a [`Fault::Gpio`].
#[derive(Debug, thiserror::Error)]
pub enum GpioError {
    /// A Raspberry Pi pin (rppal).
    #[error(transparent)]
    Rppal(#[from] rppal::gpio::Error),
    /// A line of a GPIO character device (gpiocdev).
    #[error(transparent)]
    Cdev(#[from] gpiocdev::Error),
}

/// A GPIO error with the message that explains it.
fn gpio_fault(message: String, source: impl Into<GpioError>) -> Fault {
    Fault::Gpio {
        message,
        source: source.into(),
    }
}

/// Why a Raspberry Pi pin could not be opened, with what to do about it.
fn rppal_fault(key: &str, pin: u8, e: rppal::gpio::Error) -> Fault {
    gpio_fault(rppal_message(key, pin, &e), e)
}

/// What [`rppal_fault`] says.
fn rppal_message(key: &str, pin: u8, e: &rppal::gpio::Error) -> String {
    use rppal::gpio::Error as E;
    match e {
        E::UnknownModel => format!(
            "{key} = {pin}: this machine is not a Raspberry Pi the GPIO library knows (no \
             /dev/gpiomem and no known model); on other boards, or if the Pi model is newer \
             than the library, use type = \"gpiochip\" with chip = \"/dev/gpiochipN\" and the \
             line number (see `gpioinfo`)"
        ),
        E::PermissionDenied(path) => format!(
            "{key} = {pin}: permission denied on {path}: add the user to the gpio group \
             (`sudo usermod -aG gpio USER`, then log in again or restart the service)"
        ),
        E::PinUsed(_) => format!(
            "{key} = {pin}: the pin is already used by another part of this configuration; \
             each pin can serve only one PTT or carrier"
        ),
        E::PinNotAvailable(_) => format!(
            "{key} = {pin}: this Raspberry Pi has no such GPIO; use a BCM GPIO number from 0 \
             to {MAX_BCM_PIN}"
        ),
        E::Io(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            format!("{key} = {pin}: permission denied ({e}): add the user to the gpio group")
        }
        other => format!("{key} = {pin}: cannot open the GPIO: {other}"),
    }
}

/// A Raspberry Pi output pin.
#[derive(Debug)]
pub struct RppalOutput(rppal::gpio::OutputPin);

impl RppalOutput {
    /// Opens BCM pin `pin` as an output whose first level is `initial_high`: the pin is
    /// set to that level before it becomes an output, so it never shows another one.
    /// `key` names the setting in errors.
    pub fn open(key: &str, pin: u8, initial_high: bool) -> Result<Self, Fault> {
        check_pin(key, pin)?;
        let gpio = rppal::gpio::Gpio::new().map_err(|e| rppal_fault(key, pin, e))?;
        let p = gpio.get(pin).map_err(|e| rppal_fault(key, pin, e))?;
        let mut out = if initial_high {
            p.into_output_high()
        } else {
            p.into_output_low()
        };
        // Keep driving the unkeyed level after we let go, rather than floating the pin.
        out.set_reset_on_drop(false);
        Ok(RppalOutput(out))
    }
}

impl OutputLine for RppalOutput {
    fn set(&mut self, high: bool) -> io::Result<()> {
        if high {
            self.0.set_high();
        } else {
            self.0.set_low();
        }
        Ok(())
    }
}

/// A Raspberry Pi input pin.
#[derive(Debug)]
pub struct RppalInput(rppal::gpio::InputPin);

impl RppalInput {
    /// Opens BCM pin `pin` as an input with the given pull resistor.
    pub fn open(key: &str, pin: u8, pull: Pull) -> Result<Self, Fault> {
        check_pin(key, pin)?;
        let gpio = rppal::gpio::Gpio::new().map_err(|e| rppal_fault(key, pin, e))?;
        let p = gpio.get(pin).map_err(|e| rppal_fault(key, pin, e))?;
        Ok(RppalInput(match pull {
            Pull::Up => p.into_input_pullup(),
            Pull::Down => p.into_input_pulldown(),
            Pull::None => p.into_input(),
        }))
    }
}

impl InputLine for RppalInput {
    fn get(&mut self) -> io::Result<bool> {
        Ok(self.0.is_high())
    }
}

// --- GPIO character device lines (gpiocdev) ---

/// Checks that `chip` can be opened and has line `line`, free; the error says what to do.
fn check_chip_line(prefix: &str, chip: &Path, line: u32) -> Result<(), Fault> {
    let chip_key = format!("{prefix}.chip {}", chip.display());
    if let Err(e) = std::fs::File::open(chip) {
        let message = match e.kind() {
            io::ErrorKind::NotFound => format!(
                "{chip_key}: no such GPIO chip; list the chips with `gpiodetect` (package \
                 gpiod) or `ls /dev/gpiochip*`"
            ),
            io::ErrorKind::PermissionDenied => format!(
                "{chip_key}: permission denied: add the user to the gpio group (see \
                 hw/99-zello-gateway.rules), then log in again or restart the service"
            ),
            _ => format!("{chip_key}: cannot open: {e}"),
        };
        return Err(Fault::io(message, e));
    }
    let unusable =
        |e: gpiocdev::Error| gpio_fault(format!("{chip_key}: not a usable GPIO chip: {e}"), e);
    let c = gpiocdev::Chip::from_path(chip).map_err(unusable)?;
    let info = c.info().map_err(unusable)?;
    if line >= info.num_lines {
        return Err(Fault::Setting(format!(
            "{prefix}.line = {line}: {} ({}) has {} lines, 0 to {}; see `gpioinfo {}`",
            chip.display(),
            info.label,
            info.num_lines,
            info.num_lines.saturating_sub(1),
            info.name
        )));
    }
    if let Ok(li) = c.line_info(line)
        && li.used
    {
        let by = if li.consumer.is_empty() {
            "another user (a kernel driver or program)".to_string()
        } else {
            format!("\"{}\"", li.consumer)
        };
        return Err(Fault::Device(format!(
            "{prefix}.line = {line} on {}: the line is in use by {by}; free it or pick \
             another line",
            chip.display()
        )));
    }
    Ok(())
}

fn cdev_request_error(prefix: &str, chip: &Path, line: u32, e: gpiocdev::Error) -> Fault {
    let message = format!(
        "{prefix}.chip {} line {line}: cannot request the line: {e}; check that no other \
         program holds it (`gpioinfo`) and that the user is in the gpio group",
        chip.display()
    );
    gpio_fault(message, e)
}

/// An output line of a GPIO character device.
pub struct CdevOutput {
    request: gpiocdev::Request,
    line: u32,
}

impl std::fmt::Debug for CdevOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CdevOutput")
            .field("chip", &self.request.chip_path())
            .field("line", &self.line)
            .finish()
    }
}

impl CdevOutput {
    /// Requests `line` of `chip` as an output whose initial level, set by the kernel in the
    /// same request, is `initial_high`. `prefix` is the setting's section ("ptt").
    pub fn open(prefix: &str, chip: &Path, line: u32, initial_high: bool) -> Result<Self, Fault> {
        check_chip_line(prefix, chip, line)?;
        let value = if initial_high {
            gpiocdev::line::Value::Active
        } else {
            gpiocdev::line::Value::Inactive
        };
        let request = gpiocdev::Request::builder()
            .on_chip(chip)
            .with_consumer(CONSUMER)
            .with_line(line)
            .as_output(value)
            .request()
            .map_err(|e| cdev_request_error(prefix, chip, line, e))?;
        Ok(CdevOutput { request, line })
    }
}

impl OutputLine for CdevOutput {
    fn set(&mut self, high: bool) -> io::Result<()> {
        let value = if high {
            gpiocdev::line::Value::Active
        } else {
            gpiocdev::line::Value::Inactive
        };
        self.request
            .set_value(self.line, value)
            .map_err(io::Error::other)
    }
}

/// An input line of a GPIO character device.
pub struct CdevInput {
    request: gpiocdev::Request,
    line: u32,
}

impl std::fmt::Debug for CdevInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CdevInput")
            .field("chip", &self.request.chip_path())
            .field("line", &self.line)
            .finish()
    }
}

impl CdevInput {
    /// Requests `line` of `chip` as an input with the given pull resistor.
    pub fn open(prefix: &str, chip: &Path, line: u32, pull: Pull) -> Result<Self, Fault> {
        check_chip_line(prefix, chip, line)?;
        let bias = match pull {
            Pull::Up => gpiocdev::line::Bias::PullUp,
            Pull::Down => gpiocdev::line::Bias::PullDown,
            Pull::None => gpiocdev::line::Bias::Disabled,
        };
        let request = gpiocdev::Request::builder()
            .on_chip(chip)
            .with_consumer(CONSUMER)
            .with_line(line)
            .as_input()
            .with_bias(bias)
            .request()
            .map_err(|e| cdev_request_error(prefix, chip, line, e))?;
        Ok(CdevInput { request, line })
    }
}

impl InputLine for CdevInput {
    fn get(&mut self) -> io::Result<bool> {
        self.request
            .value(self.line)
            .map(|v| v == gpiocdev::line::Value::Active)
            .map_err(io::Error::other)
    }
}

// --- PTT ---

/// PTT on a GPIO output line.
pub struct GpioPtt {
    line: Box<dyn OutputLine>,
    active_low: bool,
    label: String,
}

debug_fields!(GpioPtt { label, active_low });

impl GpioPtt {
    /// Opens a Raspberry Pi pin, already at the unkeyed level.
    pub fn open(s: &GpioPttSettings) -> Result<Self, RadioError> {
        let line = RppalOutput::open("ptt.pin", s.pin, s.active_low)
            .map_err(|f| RadioError::ptt("gpio", f))?;
        let ptt = Self::from_line(Box::new(line), s.active_low, format!("gpio {}", s.pin))?;
        info!(ptt = %ptt.describe(), active_low = s.active_low, "PTT ready, unkeyed");
        Ok(ptt)
    }

    /// Opens a line of a GPIO character device, requested at the unkeyed level.
    pub fn open_chip(s: &GpioChipPttSettings) -> Result<Self, RadioError> {
        let line = CdevOutput::open("ptt", &s.chip, s.line, s.active_low)
            .map_err(|f| RadioError::ptt("gpiochip", f))?;
        let ptt = Self::from_line(
            Box::new(line),
            s.active_low,
            format!("gpiochip {} line {}", s.chip.display(), s.line),
        )?;
        info!(ptt = %ptt.describe(), active_low = s.active_low, "PTT ready, unkeyed");
        Ok(ptt)
    }

    /// PTT on any output line; drives it to the unkeyed level before returning.
    pub fn from_line(
        line: Box<dyn OutputLine>,
        active_low: bool,
        label: String,
    ) -> Result<Self, RadioError> {
        let mut ptt = GpioPtt {
            line,
            active_low,
            label,
        };
        ptt.set(false)?;
        Ok(ptt)
    }
}

impl Ptt for GpioPtt {
    fn set(&mut self, keyed: bool) -> Result<(), RadioError> {
        let high = keyed != self.active_low;
        self.line.set(high).map_err(|e| {
            let message = format!(
                "{}: cannot {}: {e}",
                self.label,
                if keyed { "key" } else { "unkey" }
            );
            RadioError::ptt("gpio", Fault::io(message, e))
        })
    }

    fn describe(&self) -> String {
        self.label.clone()
    }
}

/// Forces the transmitter off through a Raspberry Pi pin (the `ptt-off` command): opens the
/// pin at the unkeyed level and leaves it driven there.
pub fn force_off(s: &GpioPttSettings) -> Result<(), RadioError> {
    GpioPtt::open(s).map(drop)
}

/// Forces the transmitter off through a GPIO character device line: requests it at the
/// unkeyed level, then releases it (most boards keep the level after the release).
pub fn force_off_chip(s: &GpioChipPttSettings) -> Result<(), RadioError> {
    GpioPtt::open_chip(s).map(drop)
}

// --- Carrier detect ---

/// Accepts a level change only once it has held for a set time, counted in frame time.
///
/// The line is sampled once per frame. A new level must be seen on consecutive frames
/// spanning at least `debounce_ms` (counted from the first frame that saw it), so a change
/// is accepted after it has held at least that long, at most one frame later than ideal.
/// A debounce of 0 accepts every change at once.
#[derive(Debug, Clone)]
pub struct Debounce {
    debounce_ms: u32,
    stable: bool,
    /// Frame time the candidate level has been seen for, beyond its first frame.
    held_ms: Option<u32>,
}

impl Debounce {
    /// Starts at `initial`.
    pub fn new(debounce_ms: u32, initial: bool) -> Self {
        Debounce {
            debounce_ms,
            stable: initial,
            held_ms: None,
        }
    }

    /// Feeds one sample taken at the start of a frame of `frame_ms`; returns the accepted
    /// level.
    pub fn feed(&mut self, level: bool, frame_ms: u32) -> bool {
        if level == self.stable {
            self.held_ms = None;
            return self.stable;
        }
        let held = match self.held_ms {
            None => 0,
            Some(ms) => ms.saturating_add(frame_ms),
        };
        if held >= self.debounce_ms {
            self.stable = level;
            self.held_ms = None;
        } else {
            self.held_ms = Some(held);
        }
        self.stable
    }

    /// The accepted level.
    pub fn level(&self) -> bool {
        self.stable
    }
}

/// Carrier detect on a GPIO input line (COS / COR / squelch output).
///
/// `update` reads the line directly: a register read on the Pi, one ioctl on a character
/// device, neither of which waits on anything.
pub struct GpioCarrier {
    line: Box<dyn InputLine>,
    active_low: bool,
    debounce: Debounce,
    label: String,
}

debug_fields!(GpioCarrier {
    label,
    active_low,
    debounce,
});

impl GpioCarrier {
    /// Opens a Raspberry Pi pin as the carrier input.
    pub fn open(s: &GpioCarrierSettings) -> Result<Self, RadioError> {
        check_debounce(s.debounce_ms).map_err(|f| RadioError::carrier("gpio", f))?;
        let line = RppalInput::open("carrier.pin", s.pin, s.pull)
            .map_err(|f| RadioError::carrier("gpio", f))?;
        let c = Self::from_line(
            Box::new(line),
            s.active_low,
            s.debounce_ms,
            format!("gpio {}", s.pin),
        );
        info!(carrier = %c.describe(), active_low = s.active_low, pull = ?s.pull, "carrier detect ready");
        Ok(c)
    }

    /// Opens a line of a GPIO character device as the carrier input.
    pub fn open_chip(s: &GpioChipCarrierSettings) -> Result<Self, RadioError> {
        check_debounce(s.debounce_ms).map_err(|f| RadioError::carrier("gpiochip", f))?;
        let line = CdevInput::open("carrier", &s.chip, s.line, s.pull)
            .map_err(|f| RadioError::carrier("gpiochip", f))?;
        let c = Self::from_line(
            Box::new(line),
            s.active_low,
            s.debounce_ms,
            format!("gpiochip {} line {}", s.chip.display(), s.line),
        );
        info!(carrier = %c.describe(), active_low = s.active_low, pull = ?s.pull, "carrier detect ready");
        Ok(c)
    }

    /// Carrier detect on any input line. It starts with the carrier down.
    pub fn from_line(
        line: Box<dyn InputLine>,
        active_low: bool,
        debounce_ms: u32,
        label: String,
    ) -> Self {
        GpioCarrier {
            line,
            active_low,
            debounce: Debounce::new(debounce_ms, false),
            label,
        }
    }
}

impl CarrierDetect for GpioCarrier {
    /// A read error is returned as is; the debounced state is kept for the next frame.
    fn update(&mut self, _level_dbfs: f32, frame_ms: u32) -> Result<bool, RadioError> {
        let high = self.line.get().map_err(|e| {
            RadioError::carrier(
                "gpio",
                Fault::io(format!("{}: cannot read: {e}", self.label), e),
            )
        })?;
        Ok(self.debounce.feed(high != self.active_low, frame_ms))
    }

    fn needs_level(&self) -> bool {
        false
    }

    fn describe(&self) -> String {
        self.label.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// An output line that records every level written; it can be told to fail.
    #[derive(Clone, Default)]
    struct FakeOut {
        writes: Arc<Mutex<Vec<bool>>>,
        fail: Arc<Mutex<bool>>,
    }

    impl OutputLine for FakeOut {
        fn set(&mut self, high: bool) -> io::Result<()> {
            if *self.fail.lock().unwrap() {
                return Err(io::Error::other("line gone"));
            }
            self.writes.lock().unwrap().push(high);
            Ok(())
        }
    }

    impl FakeOut {
        fn writes(&self) -> Vec<bool> {
            self.writes.lock().unwrap().clone()
        }
    }

    /// An input line whose level the test sets; `None` makes reads fail.
    #[derive(Clone, Default)]
    struct FakeIn(Arc<Mutex<Option<bool>>>);

    impl FakeIn {
        fn put(&self, level: Option<bool>) {
            *self.0.lock().unwrap() = level;
        }
    }

    impl InputLine for FakeIn {
        fn get(&mut self) -> io::Result<bool> {
            self.0
                .lock()
                .unwrap()
                .ok_or_else(|| io::Error::other("read failed"))
        }
    }

    fn chip_ptt(chip: PathBuf, line: u32, active_low: bool) -> GpioChipPttSettings {
        GpioChipPttSettings {
            chip,
            line,
            active_low,
        }
    }

    #[test]
    fn ptt_starts_unkeyed_active_high() {
        let out = FakeOut::default();
        let mut ptt = GpioPtt::from_line(Box::new(out.clone()), false, "test".into()).unwrap();
        assert_eq!(out.writes(), [false], "opened at the unkeyed (low) level");
        ptt.set(true).unwrap();
        ptt.set(false).unwrap();
        assert_eq!(out.writes(), [false, true, false]);
        assert_eq!(ptt.describe(), "test");
    }

    #[test]
    fn ptt_active_low_inverts() {
        let out = FakeOut::default();
        let mut ptt = GpioPtt::from_line(Box::new(out.clone()), true, "test".into()).unwrap();
        assert_eq!(out.writes(), [true], "unkeyed is high when active low");
        ptt.set(true).unwrap();
        assert_eq!(out.writes(), [true, false]);
        ptt.set(false).unwrap();
        assert_eq!(out.writes(), [true, false, true]);
    }

    #[test]
    fn ptt_errors_propagate() {
        let out = FakeOut::default();
        *out.fail.lock().unwrap() = true;
        let err = GpioPtt::from_line(Box::new(out.clone()), false, "gpio 17".into())
            .unwrap_err()
            .to_string();
        assert!(err.contains("gpio 17: cannot unkey: line gone"), "{err}");

        let out = FakeOut::default();
        let mut ptt = GpioPtt::from_line(Box::new(out.clone()), false, "gpio 17".into()).unwrap();
        *out.fail.lock().unwrap() = true;
        let err = ptt.set(true).unwrap_err().to_string();
        assert!(err.starts_with("PTT gpio: gpio 17: cannot key"), "{err}");
        *out.fail.lock().unwrap() = false;
        ptt.set(false).unwrap();
        assert_eq!(out.writes(), [false, false]);
    }

    #[test]
    fn debounce_needs_the_level_to_hold() {
        // 20 ms debounce, 20 ms frames: a change seen on two consecutive frames counts.
        let mut d = Debounce::new(20, false);
        assert!(!d.feed(true, 20));
        assert!(d.feed(true, 20));
        // One-frame glitches never count.
        for _ in 0..10 {
            assert!(d.feed(false, 20));
            assert!(d.feed(true, 20));
        }
        assert!(d.feed(false, 20), "the first low sample is not enough");
        assert!(!d.feed(false, 20));
        assert!(!d.level());

        // 60 ms frames with 100 ms debounce: the third sample (120 ms after the first).
        let mut d = Debounce::new(100, false);
        assert_eq!(
            [d.feed(true, 60), d.feed(true, 60), d.feed(true, 60)],
            [false, false, true]
        );

        // No debounce: every sample counts.
        let mut d = Debounce::new(0, false);
        assert!(d.feed(true, 20));
        assert!(!d.feed(false, 20));

        // Huge values do not overflow.
        let mut d = Debounce::new(u32::MAX, false);
        for _ in 0..10 {
            assert!(!d.feed(true, 1000));
        }
        assert!(d.feed(true, u32::MAX));
    }

    #[test]
    fn carrier_polarity_and_debounce() {
        let input = FakeIn::default();
        input.put(Some(false));
        let mut c = GpioCarrier::from_line(Box::new(input.clone()), true, 20, "cos".into());
        // Active low: a low line is carrier up, after the debounce.
        assert!(!c.update(-90.0, 20).unwrap(), "starts down, needs 20 ms");
        assert!(c.update(-90.0, 20).unwrap());
        input.put(Some(true));
        assert!(c.update(-90.0, 20).unwrap());
        assert!(!c.update(-90.0, 20).unwrap());

        let input = FakeIn::default();
        input.put(Some(true));
        let mut c = GpioCarrier::from_line(Box::new(input.clone()), false, 0, "cos".into());
        assert!(c.update(0.0, 20).unwrap(), "active high: high is up");
        input.put(Some(false));
        assert!(!c.update(0.0, 20).unwrap());
        assert_eq!(c.describe(), "cos");
    }

    #[test]
    fn carrier_read_errors_propagate_and_keep_state() {
        let input = FakeIn::default();
        input.put(Some(true));
        let mut c = GpioCarrier::from_line(Box::new(input.clone()), false, 0, "gpio 27".into());
        assert!(c.update(0.0, 20).unwrap());
        input.put(None);
        let err = c.update(0.0, 20).unwrap_err().to_string();
        assert_eq!(
            err,
            "carrier detect gpio: gpio 27: cannot read: read failed"
        );
        input.put(Some(true));
        assert!(c.update(0.0, 20).unwrap(), "state kept across the error");
    }

    #[test]
    fn pins_are_validated() {
        let err = GpioPtt::open(&GpioPttSettings {
            pin: 28,
            active_low: false,
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("ptt.pin = 28"), "{err}");
        assert!(err.contains("0 to 27"), "{err}");
        let err = GpioCarrier::open(&GpioCarrierSettings {
            pin: 40,
            active_low: true,
            pull: Pull::Up,
            debounce_ms: 20,
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("carrier.pin = 40"), "{err}");
        let err = GpioCarrier::open(&GpioCarrierSettings {
            pin: 4,
            active_low: true,
            pull: Pull::Up,
            debounce_ms: 60_000,
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("carrier.debounce_ms = 60000"), "{err}");
    }

    /// On a machine that is not a Raspberry Pi (this test machine, CI) the error says so and
    /// points to the character-device alternative.
    #[test]
    fn rppal_off_a_pi_gives_a_clear_error() {
        let on_a_pi = std::fs::read_to_string("/proc/device-tree/model")
            .is_ok_and(|m| m.contains("Raspberry Pi"));
        if on_a_pi {
            return;
        }
        let err = GpioPtt::open(&GpioPttSettings {
            pin: 17,
            active_low: false,
        })
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("PTT gpio: ptt.pin = 17:"), "{err}");
        assert!(err.contains("not a Raspberry Pi"), "{err}");
        assert!(err.contains("type = \"gpiochip\""), "{err}");
        let err = force_off(&GpioPttSettings {
            pin: 17,
            active_low: false,
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("not a Raspberry Pi"), "{err}");
        let err = GpioCarrier::open(&GpioCarrierSettings {
            pin: 27,
            active_low: true,
            pull: Pull::Up,
            debounce_ms: 20,
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("carrier detect gpio: carrier.pin = 27:"),
            "{err}"
        );
    }

    #[test]
    fn missing_gpiochip_gives_a_clear_error() {
        let chip = PathBuf::from("/dev/gpiochip99");
        let err = GpioPtt::open_chip(&chip_ptt(chip.clone(), 17, false))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "PTT gpiochip: ptt.chip /dev/gpiochip99: no such GPIO chip; list the chips with \
             `gpiodetect` (package gpiod) or `ls /dev/gpiochip*`"
        );
        let err = force_off_chip(&chip_ptt(chip.clone(), 17, true))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no such GPIO chip"), "{err}");
        let err = GpioCarrier::open_chip(&GpioChipCarrierSettings {
            chip,
            line: 27,
            active_low: true,
            pull: Pull::Up,
            debounce_ms: 20,
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("carrier detect gpiochip: carrier.chip /dev/gpiochip99: no such"),
            "{err}"
        );
    }

    #[test]
    fn a_file_that_is_not_a_gpiochip_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let fake = crate::radio::testing::empty_file(dir.path(), "gpiochip0");
        let err = GpioPtt::open_chip(&chip_ptt(fake, 0, false))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a usable GPIO chip"), "{err}");
    }

    #[test]
    fn settings_deserialize_with_defaults() {
        let s: GpioPttSettings = toml::from_str("pin = 17").unwrap();
        assert_eq!(
            s,
            GpioPttSettings {
                pin: 17,
                active_low: false
            }
        );
        let s: GpioChipPttSettings =
            toml::from_str("chip = \"/dev/gpiochip4\"\nline = 17\nactive_low = true").unwrap();
        assert_eq!(s.chip, PathBuf::from("/dev/gpiochip4"));
        assert!(s.active_low);
        let s: GpioCarrierSettings = toml::from_str("pin = 27").unwrap();
        assert_eq!(
            s,
            GpioCarrierSettings {
                pin: 27,
                active_low: false,
                pull: Pull::None,
                debounce_ms: 20
            }
        );
        let s: GpioChipCarrierSettings = toml::from_str(
            "chip = \"/dev/gpiochip0\"\nline = 5\npull = \"up\"\nactive_low = true\ndebounce_ms = 50",
        )
        .unwrap();
        assert_eq!(s.pull, Pull::Up);
        assert_eq!(s.debounce_ms, 50);
        let s: GpioCarrierSettings = toml::from_str("pin = 27\npull = \"down\"").unwrap();
        assert_eq!(s.pull, Pull::Down);

        for bad in [
            "pin = 17\nactive_lo = true",
            "pin = 300",
            "pin = -1",
            "active_low = true",
        ] {
            assert!(toml::from_str::<GpioPttSettings>(bad).is_err(), "{bad}");
        }
        let err = toml::from_str::<GpioCarrierSettings>("pin = 27\npull = \"sideways\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("up") && err.contains("none"), "{err}");
    }
}
