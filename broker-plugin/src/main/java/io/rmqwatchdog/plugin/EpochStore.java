/*
 * The last epoch the plug-in served, persisted in STORE_ROOT/watchdog-plugin.epoch, so that a
 * broker restart does not accept an epoch it has already served (or an older one) again.
 */
package io.rmqwatchdog.plugin;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;

/** Reads and atomically replaces the epoch file: "<decimal epoch>\n". */
final class EpochStore {
    static final String FILE_NAME = "watchdog-plugin.epoch";

    private final Path path;

    EpochStore(Path path) {
        this.path = path;
    }

    Path path() {
        return path;
    }

    /** The stored epoch, 0 when the file does not exist; IOException for anything unreadable. */
    long load() throws IOException {
        byte[] raw;
        try {
            raw = Files.readAllBytes(path);
        } catch (NoSuchFileException e) {
            return 0L;
        }
        String text = new String(raw, StandardCharsets.US_ASCII).trim();
        if (text.isEmpty() || text.length() > 19) {
            throw new IOException(path + " does not hold an epoch");
        }
        for (int i = 0; i < text.length(); i++) {
            if (text.charAt(i) < '0' || text.charAt(i) > '9') {
                throw new IOException(path + " does not hold an epoch");
            }
        }
        try {
            return Long.parseLong(text);
        } catch (NumberFormatException e) {
            throw new IOException(path + " does not hold an epoch");
        }
    }

    /** Write to a temporary file, fsync it, rename it over the old one, fsync the folder. */
    void store(long epoch) throws IOException {
        Path dir = path.toAbsolutePath().getParent();
        Files.createDirectories(dir);
        Path tmp = dir.resolve("." + path.getFileName() + ".tmp");
        byte[] data = (epoch + "\n").getBytes(StandardCharsets.US_ASCII);
        try (FileChannel out = FileChannel.open(tmp, StandardOpenOption.CREATE,
            StandardOpenOption.TRUNCATE_EXISTING, StandardOpenOption.WRITE)) {
            ByteBuffer buffer = ByteBuffer.wrap(data);
            while (buffer.hasRemaining()) {
                out.write(buffer);
            }
            out.force(true);
        }
        try {
            Files.move(tmp, path, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        } catch (AtomicMoveNotSupportedException e) {
            Files.move(tmp, path, StandardCopyOption.REPLACE_EXISTING);
        }
        // The rename is durable only once the folder is: best effort (not every platform can
        // open a folder for fsync; Linux can).
        try (FileChannel folder = FileChannel.open(dir, StandardOpenOption.READ)) {
            folder.force(true);
        } catch (IOException e) {
            // the file itself is already on disk; a crash now at worst keeps the older epoch file
        }
    }
}
