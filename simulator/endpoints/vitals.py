"""The vitals family: ``/api/devices/vitals``, the one protobuf endpoint (gone from 23.44 on).

Every device the gateway lists is built from the same snapshot as the JSON bodies: the
gateway itself, per Powerwall a TETHC with its TEPOD and TEPINV, the Powerwall+ inverter
(PVAC), its string safety unit (PVS) and their meter, the solar meter (Neurio), the site
meter and the backup switch (TESYNC). :func:`devices` returns them as
:class:`~shared.gateway.vitals.VitalsDevice`, which the shared codec encodes, so the
simulator and the poller's decoder agree by construction.
"""

from __future__ import annotations

from powerwall_bus.shared.gateway.vitals import VitalsDevice, encode_vitals
from powerwall_bus.simulator.endpoints.base import (
    NEURIO_FIRMWARE,
    PROTOBUF_CONTENT_TYPE,
    Reply,
    SiteFacts,
    Switches,
)
from powerwall_bus.simulator.endpoints.powerwalls import PVS_MCI_ALERT
from powerwall_bus.simulator.site import Firmware, SiteIdentity
from powerwall_bus.simulator.snapshot import GRID_CONNECTED, Snapshot


def vitals(facts: SiteFacts, snap: Snapshot, sw: Switches) -> Reply:
    """``/api/devices/vitals``: the devices of :func:`devices`, protobuf-encoded."""
    return Reply(200, encode_vitals(devices(facts, snap, sw.firmware)), PROTOBUF_CONTENT_TYPE)


def devices(facts: SiteFacts, snap: Snapshot, firmware: Firmware) -> list[VitalsDevice]:
    """Every device ``/api/devices/vitals`` lists, with vitals taken from ``snap``.

    Numbers are floats (the gateway sends every numeric vital as a double), PINV power in kW
    as recorded, energies in Wh. Each Powerwall contributes a TETHC (named after its package,
    so its serial is the ``battery_blocks`` PackageSerialNumber) with a TEPOD and a TEPINV
    under it.
    """
    options, identity = facts.options, facts.identity
    seen = int(snap.epoch)
    component = firmware.component_hash
    gateway = identity.ststsm_din
    on_grid = snap.grid_status == GRID_CONNECTED
    grid_state = "Grid_Compliant" if on_grid else "Grid_Uncompliant"
    year = firmware.numbers[0]
    week = firmware.numbers[1] if len(firmware.numbers) > 1 else 1
    # the gateway OS reports a build date plus a git hash, e.g. "2022-01-31-g9853d3db5"
    build = (
        f"20{year:02d}-{min(12, week // 4 + 1):02d}-{week % 28 + 1:02d}-g{firmware.git_hash[:9]}"
    )
    devices = [
        VitalsDevice(
            din=gateway,
            part_number=identity.gateway_part_number,
            serial_number=identity.gateway_serial_number,
            firmware_version=build,
            last_communication_time=seen,
            ecu_type=207,
            vitals=(("STSTSM-Location", "Gateway"),),
            alerts=("FWUpdateSucceeded", "GridCodesWrite")
            if on_grid
            else ("SystemIslandedActive",),
        )
    ]
    for pw, block in zip(identity.powerwalls, snap.blocks, strict=True):
        full = float(block.nominal_full_pack_energy_wh)
        remaining = float(block.nominal_energy_remaining_wh)
        charge_complete = remaining >= full
        devices.append(
            VitalsDevice(
                din=pw.thc_din,
                part_number=pw.package_part_number,
                serial_number=pw.package_serial_number,
                component_parent_din=gateway,
                firmware_version=component,
                last_communication_time=seen,
                ecu_type=224,
                vitals=(
                    ("THC_AmbientTemp", block.temperature_c),
                    ("THC_State", "THC_STATE_AUTONOMOUSCONTROL"),
                ),
            )
        )
        devices.append(
            VitalsDevice(
                din=pw.pod_din,
                part_number=pw.pod_part_number,
                serial_number=pw.pod_serial_number,
                component_parent_din=pw.thc_din,
                firmware_version=component,
                last_communication_time=seen,
                ecu_type=226,
                vitals=(
                    ("POD_ActiveHeating", False),
                    ("POD_CCVhold", False),
                    ("POD_ChargeComplete", charge_complete),
                    ("POD_ChargeRequest", False),
                    ("POD_DischargeComplete", block.available_discharge_power_w == 0),
                    ("POD_PermanentlyFaulted", False),
                    ("POD_PersistentlyFaulted", False),
                    ("POD_available_charge_power", block.available_charge_power_w),
                    ("POD_available_dischg_power", block.available_discharge_power_w),
                    ("POD_enable_line", True),
                    ("POD_nom_energy_remaining", remaining),
                    ("POD_nom_energy_to_be_charged", full - remaining),
                    ("POD_nom_full_pack_energy", full),
                    ("POD_state", "POD_ACTIVE"),
                ),
                alerts=("POD_w110_SW_EOC",) if charge_complete else (),
            )
        )
        devices.append(
            VitalsDevice(
                din=pw.pinv_din,
                part_number=pw.pod_part_number,
                serial_number=pw.pod_serial_number,
                component_parent_din=pw.thc_din,
                firmware_version=component,
                last_communication_time=seen,
                ecu_type=253,
                vitals=(
                    ("PINV_EnergyCharged", float(int(block.energy_charged_wh) // 10 * 10)),
                    ("PINV_EnergyDischarged", float(int(block.energy_discharged_wh) // 10 * 10)),
                    ("PINV_Fout", block.frequency_hz),
                    ("PINV_GridState", grid_state),
                    ("PINV_HardwareEnableLine", True),
                    ("PINV_PllFrequency", round(block.frequency_hz - 0.006, 3)),
                    ("PINV_PllLocked", True),
                    ("PINV_Pout", block.power_w / 1000.0),
                    ("PINV_PowerLimiter", "PWRLIM_POD_Power_Limit"),
                    ("PINV_Qout", block.reactive_power_var / 1000.0),
                    ("PINV_ReadyForGridForming", True),
                    ("PINV_State", "PINV_GridFollowing" if on_grid else "PINV_GridForming"),
                    ("PINV_VSplit1", round(block.voltage_v / 2 + 0.1, 1)),
                    ("PINV_VSplit2", round(block.voltage_v / 2 - 0.1, 1)),
                    ("PINV_Vout", block.voltage_v),
                ),
            )
        )
    if options.has_pvac:
        devices.extend(_pvac_devices(identity, snap, component, facts.strings_hash, seen))
    if options.has_solar:
        devices.append(
            VitalsDevice(
                din=f"NEURIO--{identity.neurio_serial_number}",
                serial_number=identity.neurio_serial_number,
                manufacturer="NEURIO",
                component_parent_din=gateway,
                firmware_version=NEURIO_FIRMWARE,
                last_communication_time=seen,
                meter_location=(5,),
                ip_address=f"PWRview-{identity.neurio_short_id}",
                vitals=(
                    ("NEURIO_CT0_InstRealPower", snap.solar.power_w),
                    ("NEURIO_CT0_Location", "solarRGM" if options.has_pvac else "solar"),
                ),
            )
        )
    devices.append(
        VitalsDevice(
            din=f"TESLA--{identity.meter_serial_number}",
            serial_number=identity.meter_serial_number,
            component_parent_din=gateway,
            last_communication_time=seen,
            meter_location=(1,),
        )
    )
    devices.append(_tesync_device(identity, snap, component, seen))
    return devices


def _pvac_devices(
    identity: SiteIdentity, snap: Snapshot, component: str, pvs_hash: str, seen: int
) -> list[VitalsDevice]:
    """The Powerwall+ inverter (PVAC), its string safety unit (PVS) and their meter."""
    solar = snap.solar
    strings = snap.pv_strings
    parallel = (
        strings[-1].name if len(strings) == 4 and all(s.connected for s in strings[-2:]) else ""
    )
    pvac_vitals: list[tuple[str, float | str | bool]] = [
        ("PVAC_Fout", solar.frequency_hz),
        ("PVAC_GridState", "Grid_Compliant"),
        ("PVAC_InvState", "INV_Grid_Connected"),
        ("PVAC_Iout", round(solar.current_a, 2)),
        ("PVAC_LifetimeEnergyPV_Total", float(int(solar.energy_exported_wh) // 10 * 10)),
    ]
    pvac_vitals += [(f"PVAC_PVCurrent_{s.name}", s.current_a) for s in strings]
    pvac_vitals += [(f"PVAC_PVMeasuredPower_{s.name}", s.power_w) for s in strings]
    pvac_vitals += [(f"PVAC_PVMeasuredVoltage_{s.name}", s.voltage_v) for s in strings]
    pvac_vitals.append(("PVAC_Pout", solar.power_w))
    pvac_vitals += [
        (f"PVAC_PvState_{s.name}", "PV_Active_Parallel" if s.name == parallel else "PV_Active")
        for s in strings
    ]
    home_l1, home_l2 = snap.home_voltage_l1n_v, snap.home_voltage_l2n_v
    pvac_vitals += [
        ("PVAC_Qout", solar.reactive_power_var),
        ("PVAC_State", "PVAC_Active"),
        ("PVAC_VHvMinusChassisDC", -210.0),
        ("PVAC_VL1Ground", home_l1),
        ("PVAC_VL2Ground", home_l2),
        ("PVAC_Vout", solar.voltage_v),
        ("PVI-PowerStatusSetpoint", "on"),
    ]
    pvs_vitals: list[tuple[str, float | str | bool]] = [
        ("PVS_EnableOutput", True),
        ("PVS_SelfTestState", "PVS_SelfTestOff"),
        ("PVS_State", "PVS_Active"),
    ]
    pvs_vitals += [(f"PVS_String{s.name}_Connected", s.connected) for s in strings]
    pvs_vitals.append(("PVS_vLL", round(home_l1 + home_l2, 1)))
    thc_parent = identity.powerwalls[0].thc_din
    return [
        VitalsDevice(
            din=identity.pvac_din,
            part_number=identity.pvac_part_number,
            serial_number=identity.pvac_serial_number,
            component_parent_din=thc_parent,
            firmware_version=component,
            last_communication_time=seen,
            ecu_type=296,
            vitals=tuple(pvac_vitals),
        ),
        VitalsDevice(
            din=identity.pvs_din,
            part_number=identity.pvac_part_number,
            serial_number=identity.pvac_serial_number,
            component_parent_din=identity.pvac_din,
            firmware_version=pvs_hash,
            last_communication_time=seen,
            ecu_type=297,
            vitals=tuple(pvs_vitals),
            alerts=tuple(PVS_MCI_ALERT[s.name] for s in strings if not s.connected),
        ),
        VitalsDevice(
            din=f"TESLA--{identity.pvac_part_number}--{identity.pvac_serial_number}",
            serial_number=f"{identity.pvac_part_number}--{identity.pvac_serial_number}",
            component_parent_din=identity.ststsm_din,
            firmware_version=component,
            last_communication_time=seen,
            pv_nameplate_w=identity.pv_nameplate_w,
        ),
    ]


def _tesync_device(
    identity: SiteIdentity, snap: Snapshot, component: str, seen: int
) -> VitalsDevice:
    """The backup switch: islanding state plus the synchrometer's meter X (site) and Y."""
    grid_up = snap.grid_voltage_l1n_v > 0
    site = snap.site
    v1, v2 = snap.grid_voltage_l1n_v, snap.grid_voltage_l2n_v
    reactive_a = float(round(site.reactive_power_var * 0.6))
    vitals: tuple[tuple[str, float | str | bool], ...] = (
        ("ISLAND_FreqL1_Load", snap.home_frequency_hz),
        ("ISLAND_FreqL1_Main", snap.grid_frequency_hz),
        ("ISLAND_FreqL2_Load", snap.home_frequency_hz),
        ("ISLAND_FreqL2_Main", snap.grid_frequency_hz),
        ("ISLAND_FreqL3_Load", 0.0),
        ("ISLAND_FreqL3_Main", 0.0),
        ("ISLAND_GridConnected", snap.grid_status == GRID_CONNECTED),
        (
            "ISLAND_GridState",
            "ISLAND_GridState_Grid_Compliant" if grid_up else "ISLAND_GridState_Grid_Uncompliant",
        ),
        ("ISLAND_L1L2PhaseDelta", -256.0),
        ("ISLAND_L1L3PhaseDelta", -256.0),
        ("ISLAND_L1MicrogridOk", True),
        ("ISLAND_L2L3PhaseDelta", -256.0),
        ("ISLAND_L2MicrogridOk", True),
        ("ISLAND_L3MicrogridOk", False),
        ("ISLAND_PhaseL1_Main_Load", 0.0),
        ("ISLAND_PhaseL2_Main_Load", 0.0),
        ("ISLAND_PhaseL3_Main_Load", -256.0),
        ("ISLAND_ReadyForSynchronization", grid_up),
        ("ISLAND_VL1N_Load", snap.home_voltage_l1n_v),
        ("ISLAND_VL1N_Main", v1),
        ("ISLAND_VL2N_Load", snap.home_voltage_l2n_v),
        ("ISLAND_VL2N_Main", v2),
        ("ISLAND_VL3N_Load", 0.0),
        ("ISLAND_VL3N_Main", 0.0),
        ("METER_X_CTA_I", round(abs(snap.site_power_a_w) / v1, 4) if v1 else 0.0),
        ("METER_X_CTA_InstReactivePower", reactive_a),
        ("METER_X_CTA_InstRealPower", snap.site_power_a_w),
        ("METER_X_CTB_I", round(abs(snap.site_power_b_w) / v2, 4) if v2 else 0.0),
        ("METER_X_CTB_InstReactivePower", site.reactive_power_var - reactive_a),
        ("METER_X_CTB_InstRealPower", snap.site_power_b_w),
        ("METER_X_CTC_I", 0.0),
        ("METER_X_CTC_InstReactivePower", 0.0),
        ("METER_X_CTC_InstRealPower", 0.0),
        ("METER_X_LifetimeEnergyExport", float(int(site.energy_exported_wh))),
        ("METER_X_LifetimeEnergyImport", float(int(site.energy_imported_wh))),
        ("METER_X_VL1N", v1),
        ("METER_X_VL2N", v2),
        ("METER_X_VL3N", 0.0),
        ("METER_Y_CTA_I", 0.0),
        ("METER_Y_CTA_InstReactivePower", 0.0),
        ("METER_Y_CTA_InstRealPower", 0.0),
        ("METER_Y_CTB_I", 0.0),
        ("METER_Y_CTB_InstReactivePower", 0.0),
        ("METER_Y_CTB_InstRealPower", 0.0),
        ("METER_Y_CTC_I", 0.0),
        ("METER_Y_CTC_InstReactivePower", 0.0),
        ("METER_Y_CTC_InstRealPower", 0.0),
        ("METER_Y_LifetimeEnergyExport", 0.0),
        ("METER_Y_LifetimeEnergyImport", 2.0),
        ("METER_Y_VL1N", v1),
        ("METER_Y_VL2N", v2),
        ("METER_Y_VL3N", 0.0),
        ("SYNC_ExternallyPowered", False),
        ("SYNC_SiteSwitchEnabled", False),
    )
    return VitalsDevice(
        din=identity.tesync_din,
        part_number=identity.sync_part_number,
        serial_number=identity.meter_serial_number,
        component_parent_din=identity.ststsm_din,
        firmware_version=component,
        last_communication_time=seen,
        ecu_type=259,
        vitals=vitals,
        alerts=("SYNC_a001_SW_App_Boot",),
    )
