<#
.SYNOPSIS
  Install (or upgrade, or remove) the certfleet agent as a Windows service.

.DESCRIPTION
  NOT RUN ON WINDOWS YET: see packaging\windows\README.md for what has and has not been run.

  Install / upgrade:
    1. copies the frozen agent (the certfleet-agent folder from build.ps1) to
       %ProgramFiles%\certfleet\agent (an upgrade stops the service first and starts it after);
    2. makes %ProgramData%\certfleet (agent.toml, data\ with the identity key, logs\) readable and
       writable by SYSTEM and Administrators only (inheritance removed);
    3. writes a starting agent.toml if there is none (an existing one is never changed);
    4. enrolls the host once, when -Collector, -Token and -CaFingerprint are given and the host has
       no identity yet;
    5. creates the service certfleet-agent (LocalSystem, automatic start) with its Application
       event log source, restarts on failure (10 s, 1 min, 5 min);
    6. starts it once the host is enrolled.

  -Uninstall stops and removes the service and deletes %ProgramFiles%\certfleet\agent. The
  configuration, the identity and the logs in %ProgramData%\certfleet stay unless -Purge is given.

.EXAMPLE
  # as Administrator, next to the unpacked certfleet-agent folder
  .\install.ps1 -Collector collector.example.net:7444 -Token $token -CaFingerprint 3f9a...

.EXAMPLE
  .\install.ps1 -Uninstall            # keeps %ProgramData%\certfleet
  .\install.ps1 -Uninstall -Purge     # also deletes config, identity and logs
#>
[CmdletBinding(DefaultParameterSetName = "Install")]
param(
    [Parameter(ParameterSetName = "Install")]
    [string]$Source = (Join-Path $PSScriptRoot "certfleet-agent"),

    [string]$InstallDir = (Join-Path $env:ProgramFiles "certfleet\agent"),
    [string]$DataRoot = (Join-Path $env:ProgramData "certfleet"),

    [Parameter(ParameterSetName = "Install")]
    [ValidateSet("auto", "delayed", "manual")]
    [string]$Startup = "auto",

    # enrollment (all three, or none)
    [Parameter(ParameterSetName = "Install")][string]$Collector = "",
    [Parameter(ParameterSetName = "Install")][string]$Token = "",
    [Parameter(ParameterSetName = "Install")][string]$CaFingerprint = "",

    [Parameter(ParameterSetName = "Uninstall", Mandatory)][switch]$Uninstall,
    [Parameter(ParameterSetName = "Uninstall")][switch]$Purge
)

$ErrorActionPreference = "Stop"
Set-StrictMode -Version Latest

$ServiceName = "certfleet-agent"
$Config = Join-Path $DataRoot "agent.toml"
$DataDir = Join-Path $DataRoot "data"
$LogDir = Join-Path $DataRoot "logs"
$AgentExe = Join-Path $InstallDir "certfleet-agent.exe"
$ServiceExe = Join-Path $InstallDir "certfleet-agent-service.exe"
# well-known SIDs, so that localized account names do not matter
$SidSystem = "*S-1-5-18"
$SidAdmins = "*S-1-5-32-544"

function Invoke-Native {
    # Run a program with an argument array and stop on a non-zero exit code. -Secret hides the
    # arguments from the error message (an enrollment token is one of them).
    param([Parameter(Mandatory)][string]$FilePath, [string[]]$Arguments = @(), [int[]]$Ok = @(0), [switch]$Secret)
    & $FilePath @Arguments
    if ($Ok -notcontains $LASTEXITCODE) {
        $shown = if ($Secret) { "(arguments hidden)" } else { $Arguments -join " " }
        throw "$FilePath $shown failed with exit code $LASTEXITCODE"
    }
}

function Test-Administrator {
    $id = [Security.Principal.WindowsIdentity]::GetCurrent()
    return (New-Object Security.Principal.WindowsPrincipal $id).IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)
}

function Test-ServiceInstalled {
    return [bool](Get-Service -Name $ServiceName -ErrorAction SilentlyContinue)
}

if (-not (Test-Administrator)) { throw "run this script as Administrator" }

# ---------------------------------------------------------------------------- uninstall
if ($Uninstall) {
    if (Test-ServiceInstalled) {
        if (Test-Path $ServiceExe) {
            Invoke-Native $ServiceExe @("remove")          # stops it first; removes the event source too
        } else {
            Stop-Service -Name $ServiceName -Force -ErrorAction SilentlyContinue
            Invoke-Native "sc.exe" @("delete", $ServiceName)
        }
    }
    if (Test-Path $InstallDir) { Remove-Item -Recurse -Force $InstallDir }
    if ($Purge) {
        if (Test-Path $DataRoot) { Remove-Item -Recurse -Force $DataRoot }
        Write-Host "removed $InstallDir and $DataRoot (the agent's identity is gone: revoke it on the collector with: certfleet agents revoke AGENT_ID)"
    } else {
        Write-Host "removed $InstallDir; kept the configuration, identity and logs in $DataRoot (-Purge deletes them)"
    }
    exit 0
}

# ---------------------------------------------------------------------------- install / upgrade
$enrollArgs = @($Collector, $Token, $CaFingerprint) | Where-Object { $_ }
if ($enrollArgs.Count -ne 0 -and $enrollArgs.Count -ne 3) {
    throw "-Collector, -Token and -CaFingerprint go together (all three to enroll, or none)"
}
if (-not (Test-Path (Join-Path $Source "certfleet-agent-service.exe"))) {
    throw "$Source does not hold certfleet-agent-service.exe: pass -Source with the certfleet-agent folder from build.ps1"
}

$upgrade = Test-ServiceInstalled
if ($upgrade -and (Test-Path $ServiceExe)) {
    Invoke-Native $ServiceExe @("stop")
}

# 1. the program files (robocopy: exit codes below 8 are success)
New-Item -ItemType Directory -Force -Path $InstallDir | Out-Null
& robocopy.exe $Source $InstallDir /MIR /R:2 /W:2 /NFL /NDL /NJH /NJS /NP | Out-Null
if ($LASTEXITCODE -ge 8) { throw "copying $Source to $InstallDir failed (robocopy exit code $LASTEXITCODE)" }

# 2. configuration, data and logs: SYSTEM and Administrators only
foreach ($dir in @($DataRoot, $DataDir, $LogDir)) { New-Item -ItemType Directory -Force -Path $dir | Out-Null }
Invoke-Native "icacls.exe" @($DataRoot, "/inheritance:r", "/grant:r", "${SidSystem}:(OI)(CI)F", "${SidAdmins}:(OI)(CI)F", "/T", "/Q")

# 3. a starting configuration (TOML literal strings: backslashes stay as they are)
if (-not (Test-Path $Config)) {
    Set-Content -Path $Config -Encoding UTF8 -Value @(
        "# certfleet agent configuration. Stores: see the README (Running it yourself).",
        "[agent]",
        "data_dir = '$DataDir'",
        "scan_interval = '15m'",
        "",
        "# [[store]]",
        "# name = 'iis'",
        "# type = 'pkcs12'",
        "# paths = ['C:\certs\*.pfx']",
        "# password_env = 'CERTFLEET_IIS_PFX_PASSWORD'"
    )
    Write-Host "wrote ${Config}: add the stores this host has"
}

# 4. enroll once
$enrolled = Test-Path (Join-Path $DataDir "identity\collector.json")
if ($enrollArgs.Count -eq 3 -and -not $enrolled) {
    Invoke-Native $AgentExe @("enroll", "--config", $Config, "--collector", $Collector, "--token", $Token,
        "--ca-fingerprint", $CaFingerprint) -Secret
    $enrolled = $true
} elseif ($enrollArgs.Count -eq 3) {
    Write-Host "already enrolled (identity in $DataDir\identity): the token was not used"
}

# 5. the service, its event source and what to do when it fails
if (-not $upgrade) {
    Invoke-Native $ServiceExe @("install", "--config", $Config, "--startup", $Startup, "--log-file", (Join-Path $LogDir "agent.log"))
    Invoke-Native "sc.exe" @("failure", $ServiceName, "reset=", "86400", "actions=", "restart/10000/restart/60000/restart/300000")
    Invoke-Native "sc.exe" @("failureflag", $ServiceName, "1")   # also when it stops with an error code
}

# 6. start
if ($enrolled) {
    Invoke-Native $ServiceExe @("start")
    Write-Host "certfleet-agent is running; events in the Application log (source certfleet-agent), log in $LogDir"
} else {
    Write-Host "installed, not started: enroll first, then start it:"
    Write-Host "  & '$AgentExe' enroll --config '$Config' --collector HOST:7444 --token TOKEN --ca-fingerprint SHA256"
    Write-Host "  & '$ServiceExe' start"
}
